"""A writer thread: one ``SET`` to a distinct key every 10 ms, recording what the app saw.

Each attempt is recorded with its start and end time and whether it was
acknowledged, so every metric (the longest time without an acknowledged write,
the errors, which keys must be on the final primary) is derived afterwards from
the same record, identically for every column.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .clients import Client

__all__ = ["Attempt", "Writer"]


@dataclass(frozen=True)
class Attempt:
    """One write as the application saw it (monotonic seconds)."""

    key: str
    started: float
    ended: float
    error: str | None  # None: acknowledged with OK


@dataclass
class _Log:
    attempts: list[Attempt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Writer:
    """Writes ``<prefix>:<n>`` every ``interval`` seconds through ``client`` until stopped."""

    def __init__(
        self,
        name: str,
        client_factory: Callable[[], Client],
        prefix: str,
        interval: float = 0.01,
    ) -> None:
        self.name = name
        self.prefix = prefix
        self.interval = interval
        self._factory = client_factory
        self.client: Client | None = None
        self._log = _Log()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{name}", daemon=True)
        self.crashed: BaseException | None = None

    def start(self) -> Writer:
        self.client = self._factory()
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.client is not None
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                key = f"{self.prefix}:{n}"
                started = time.monotonic()
                error: str | None = None
                try:
                    self.client.set(key, str(n))
                except Exception as exc:  # every failure is an outcome to record
                    error = f"{type(exc).__name__}: {exc}"[:200]
                attempt = Attempt(key, started, time.monotonic(), error)
                with self._log.lock:
                    self._log.attempts.append(attempt)
                self._stop.wait(self.interval)
        except BaseException as exc:  # pragma: no cover - reported by the round
            self.crashed = exc

    def attempts(self) -> list[Attempt]:
        with self._log.lock:
            return list(self._log.attempts)

    def acked_after(self, t: float) -> int:
        """Acknowledged writes that *started* after monotonic time ``t``."""
        return sum(1 for a in self.attempts() if a.error is None and a.started > t)

    def last_error_at(self) -> float | None:
        errors = [a.ended for a in self.attempts() if a.error is not None]
        return errors[-1] if errors else None

    def stop(self) -> list[Attempt]:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.client is not None:
            self.client.close()
        return self.attempts()

    @property
    def connections(self) -> int:
        return self.client.connections if self.client is not None else 0
