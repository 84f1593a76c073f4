"""A ``/status`` flood against a real AdminServer, and ``/healthz`` timed through it.

Shared by ``tests/component/test_admin_flood.py`` (which asserts that no probe
is dropped) and ``bench/admin_flood.py`` (which measures how fast ``/healthz``
stays, with and without the flood: issue 12's "within 100 ms"). The server
runs in a thread with its own event loop, as in the service one loop serves
everything; the flood runs as a child process (``python -m tests.admin_flood
PORT TOKEN CLIENTS``), so its CPU is not charged to the server's loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from xds.service.admin_documents import EventsDocument, StatusDocument
from xds.service.admin_http import AdminServer

TOKEN = "flood-test-token-5d0b7e1c9a"  # noqa: S105 - a test token
BURST = 500
PROBES = 21
#: issue 12: /healthz answers "within 100 ms" while /status is flooded (bench/admin_flood.py)
HEALTHZ_TARGET_S = 0.100
#: a dropped SYN costs at least 1 s (the initial retransmission timeout)
MAX_BOUND_S = 0.950


def status_document() -> StatusDocument:
    from tests.component.test_admin_http import status_json

    return StatusDocument.from_json(status_json(sidecars=200))


class ServerThread:
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
        document = status_document()
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


def healthz(port: int) -> float:
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



@contextmanager
def flooding(port: int, clients: int = 0) -> Iterator[subprocess.Popen[str]]:
    """A flood of ``clients`` (default BURST) running against ``port`` until the block
    ends; yields once it flows. The process's last stdout line is its JSON summary."""
    flood = subprocess.Popen(
        [sys.executable, "-m", "tests.admin_flood", str(port), TOKEN, str(clients or BURST)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert flood.stdout is not None and flood.stdin is not None
        line = flood.stdout.readline().strip()
        if line != "flooding":
            raise RuntimeError(f"the flood did not start: {line!r}")
        yield flood
    finally:
        flood.kill()
        flood.wait(timeout=10)


def stop_flood(flood: subprocess.Popen[str]) -> dict[str, object]:
    """End the flood after each client's current request; its summary."""
    assert flood.stdin is not None and flood.stdout is not None
    flood.stdin.close()
    summary: dict[str, object] = json.loads(flood.stdout.readline())
    return summary


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
