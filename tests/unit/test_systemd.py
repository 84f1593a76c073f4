"""systemd's notify protocol over a real AF_UNIX datagram socket.

READY=1 only once the service says it is ready, with a STATUS line; STATUS is
sent again when it changes; WATCHDOG=1 keeps coming at the interval derived
from WATCHDOG_USEC, and stops when the event loop stalls (which is how systemd
learns to restart us); STOPPING=1 on shutdown. Without NOTIFY_SOCKET nothing
is sent.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from xds.service.systemd import SystemdNotifier, notify_lifecycle, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def wait_for(sock: socket.socket, want: str, seen: list[str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.extend(received(sock))
        if any(want in m for m in seen):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{want!r} never arrived; got {seen}")


async def test_ready_status_watchdog_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    """READY=1 waits for readiness; STATUS follows changes; pings flow; STOPPING at the end."""
    sock, path = notify_socket
    state = {"ready": False, "status": "mymaster -> 127.0.0.1:7001"}
    task = asyncio.create_task(
        notify_lifecycle(
            SystemdNotifier({"NOTIFY_SOCKET": path}),
            lambda: (state["ready"], "not yet"),  # type: ignore[return-value]
            lambda: str(state["status"]),
            watchdog_s=0.05,
        )
    )
    seen: list[str] = []
    await wait_for(sock, "WATCHDOG=1", seen)
    assert not any("READY=1" in m for m in seen), "READY before the service was ready"
    state["ready"] = True
    await wait_for(sock, "READY=1", seen)
    assert "READY=1\nSTATUS=mymaster -> 127.0.0.1:7001" in seen
    state["status"] = "mymaster -> 127.0.0.1:7002"
    await wait_for(sock, "STATUS=mymaster -> 127.0.0.1:7002", seen)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(sock, "STOPPING=1", seen)


async def test_the_socket_is_closed_after_stopping(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """STOPPING=1 is the last message: the lifecycle closes the socket after sending it."""
    sock, path = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    task = asyncio.create_task(notify_lifecycle(notifier, lambda: (True, ""), lambda: "", None))
    seen: list[str] = []
    await wait_for(sock, "READY=1", seen)
    opened = notifier._sock  # the one datagram socket the notifier keeps
    assert opened is not None and opened.fileno() != -1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(sock, "STOPPING=1", seen)
    assert opened.fileno() == -1 and notifier._sock is None


def test_a_failing_socket_is_logged_once_per_distinct_error(tmp_path: Path) -> None:
    """A watchdog ping every few seconds into a broken NOTIFY_SOCKET must not write a
    warning each time: one line per distinct error, and again only after a send worked."""
    path = tmp_path / "notify"
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        assert not any([notifier.send("WATCHDOG=1") for _ in range(5)])  # no such file
        path.write_text("")  # a file that is not a socket: another error
        assert not any([notifier.send("WATCHDOG=1") for _ in range(5)])
        path.unlink()
        assert not notifier.send("WATCHDOG=1")  # the first error again: already said
    failures = [e for e in logs if e["event"] == "systemd.notify_failed"]
    assert len(failures) == 2 and failures[0]["error"] != failures[1]["error"]
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        with capture_logs() as logs:
            assert notifier.send("WATCHDOG=1")
            server.close()
            path.unlink()
            assert not notifier.send("WATCHDOG=1")
            assert not notifier.send("WATCHDOG=1")
        assert [e["event"] for e in logs] == ["systemd.notify_recovered", "systemd.notify_failed"]
        assert logs[0]["failed_sends"] == 11
    finally:
        server.close()
        notifier.close()


async def test_a_stalled_loop_stops_the_pings(notify_socket: tuple[socket.socket, str]) -> None:
    """While the event loop is blocked no WATCHDOG=1 is sent: systemd would restart us."""
    sock, path = notify_socket
    task = asyncio.create_task(
        notify_lifecycle(
            SystemdNotifier({"NOTIFY_SOCKET": path}), lambda: (True, ""), lambda: "", 0.02
        )
    )
    seen: list[str] = []
    await wait_for(sock, "WATCHDOG=1", seen)
    received(sock)
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test: blocks the loop on purpose
    during = [m for m in received(sock) if m == "WATCHDOG=1"]
    assert len(during) <= 1  # at most the one already queued when the stall began
    seen = []
    await wait_for(sock, "WATCHDOG=1", seen)  # and they resume with the loop
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_abstract_socket_names_are_supported() -> None:
    """``@name`` (Linux abstract namespace) is a real socket address too."""
    name = f"sentinel-xds-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """systemd's advice: ping at half the timeout; not for another process's WATCHDOG_PID."""
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000"}) == 1.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 1.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None
