"""``/healthz`` stays fast while ``/status`` is flooded (issue 12: "within 100 ms").

The admin server runs in a thread of this process with its own event loop
(as in the service, one loop serves everything); the flood comes from a
child process (this file run as a script), 500 clients each sending
``GET /status`` on a new connection again and again, so the flood's own CPU is not charged to the
server's loop; ``/healthz`` is probed from the main thread while the flood
runs.

Bounds: the issue's stated requirement, made robust for a loaded 2-core
machine: the median of 21 probes within 100 ms (measured: ~0.3-3 ms), and
every probe under 950 ms, i.e. no connection of the probe was dropped. Before
the fix a burst overflowed the listen backlog (128), the kernel dropped the
probe's SYN and ``/healthz`` answered after the 1 s SYN retry, failing a
liveness probe with a 1 s timeout (measured with the old backlog: median
3 ms, max 1,120 ms; with the fix the worst probe seen was ~630 ms on a box
at load 6, which is queueing behind the burst, not a drop). The flood is
checked to have happened (500 ``/status`` answers before the probes, more
during them).
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
import structlog

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from xds.service.admin_documents import EventsDocument, StatusDocument
from xds.service.admin_http import AdminServer

TOKEN = "flood-test-token-5d0b7e1c9a"  # noqa: S105 - a test token
BURST = 500
PROBES = 21
MEDIAN_BOUND_S = 0.100
#: a dropped SYN costs at least 1 s (the initial retransmission timeout)
MAX_BOUND_S = 0.950


def _status_document() -> StatusDocument:
    from tests.component.test_admin_http import status_json

    return StatusDocument.from_json(status_json(sidecars=200))


class _ServerThread:
    """An AdminServer on 127.0.0.1:0 in its own thread and event loop."""

    def __init__(self) -> None:
        self.port: Future[int] = Future()
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="admin-under-flood")

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        document = _status_document()
        server = AdminServer(
            lambda: document,
            lambda: (True, "ok"),
            events=lambda n: EventsDocument(()),
            token=Secret(TOKEN),
        )
        try:
            self.port.set_result(await server.start(Address("127.0.0.1", 0)))
            await self._stopped.wait()
        except BaseException as exc:
            if not self.port.done():
                self.port.set_exception(exc)
            raise
        finally:
            await server.stop()

    def __enter__(self) -> int:
        self._thread.start()
        return self.port.result(timeout=10)

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Info level, as the service runs (per-request ``admin.request`` lines are debug)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))
    try:
        yield
    finally:
        structlog.reset_defaults()


def _healthz(port: int) -> float:
    """Seconds for one ``GET /healthz`` on a new connection, connect to last byte."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    elapsed = time.perf_counter() - start
    assert reply.startswith(b"HTTP/1.1 200"), reply[:60]
    return elapsed


def test_healthz_answers_quickly_while_status_is_flooded(quiet_logs: None) -> None:
    with _ServerThread() as port:
        flood = subprocess.Popen(
            [sys.executable, __file__, str(port), TOKEN, str(BURST)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert flood.stdout is not None and flood.stdin is not None
            assert flood.stdout.readline().strip() == "flooding"
            quiet = [_healthz(port) for _ in range(3)]  # not asserted; shown on failure
            probes = [_healthz(port) for _ in range(PROBES)]
            flood.stdin.close()  # ends the flood after each client's current request
            summary = json.loads(flood.stdout.readline())
        finally:
            flood.kill()
            flood.wait(timeout=10)
    shown = (
        f"healthz ms: {[round(p * 1000, 1) for p in probes]} "
        f"(first 3 {[round(q * 1000, 1) for q in quiet]}); flood: {summary}"
    )
    assert summary["answered"] >= 2 * BURST and summary["failed"] == 0, shown
    assert set(summary["statuses"]) <= {"200", "503"}, shown
    assert statistics.median(probes) <= MEDIAN_BOUND_S, shown
    assert max(probes) <= MAX_BOUND_S, shown


# --------------------------------------------------------------------------- the flood


async def _one(port: int, request: bytes) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status = (await reader.readline()).split(b" ")[1].decode()
        await reader.read()  # to EOF (Connection: close)
        return status
    finally:
        writer.close()


async def _flood(port: int, token: str, concurrency: int) -> None:
    """``concurrency`` clients, each sending ``/status`` on a new connection again and
    again until stdin closes; says "flooding" once ``concurrency`` answers came back."""
    request = (
        f"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # EOF: done
    statuses: dict[str, int] = {}
    failed = 0

    async def client() -> None:
        nonlocal failed
        while not stop.done():
            try:
                status = await _one(port, request)
            except OSError:
                failed += 1
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if sum(statuses.values()) == concurrency:
                print("flooding", flush=True)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    answered = sum(statuses.values())
    print(json.dumps({"answered": answered, "failed": failed, "statuses": statuses}), flush=True)


if __name__ == "__main__":
    asyncio.run(_flood(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
