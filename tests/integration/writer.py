"""A background writer: distinct keys every 10 ms over one never-reconnecting connection."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.resp import ConnectionLost, OneConnection, RespError


@dataclass
class WriterResult:
    acked: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    connection_lost: str | None = None
    first_error_at: float | None = None
    recovered_at: float | None = None  # first OK after the first error


class Writer:
    """``SET w:<n> <n>`` in a loop until stopped; records what was acknowledged."""

    def __init__(self, host: str, port: int, interval: float = 0.01, timeout: float = 60.0) -> None:
        self.conn = OneConnection(host, port, timeout=timeout)
        self.interval = interval
        self.result = WriterResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.in_flight = threading.Event()

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"w:{n}"
            try:
                self.in_flight.set()
                reply = self.conn.command("SET", key, str(n))
                self.in_flight.clear()
                if reply == "OK":
                    self.result.acked.append(key)
                    if self.result.first_error_at and self.result.recovered_at is None:
                        self.result.recovered_at = time.monotonic()
            except RespError as exc:
                self.in_flight.clear()
                now = time.monotonic()
                self.result.errors.append((now, str(exc)))
                if self.result.first_error_at is None:
                    self.result.first_error_at = now
            except ConnectionLost as exc:
                self.result.connection_lost = str(exc)
                return
            self._stop.wait(self.interval)

    def acked_since(self, count: int) -> int:
        return len(self.result.acked) - count

    def stop(self) -> WriterResult:
        self._stop.set()
        self._thread.join(timeout=70)
        self.conn.close()
        return self.result
