"""`sentinel-xds serve` under systemd's notify protocol, for real.

The control plane runs as a process with ``NOTIFY_SOCKET`` pointing at a real
AF_UNIX datagram socket this test owns (what systemd does for ``Type=notify``)
and ``WATCHDOG_USEC`` set (``WatchdogSec=``), next to real Sentinels and Redis:

* ``READY=1`` arrives with a ``STATUS=`` line naming the group's primary, and
  by then ``/readyz`` answers 200 (started means serving);
* ``WATCHDOG=1`` keeps arriving at half the watchdog interval;
* after a ``kill -9`` of the primary a new ``STATUS=`` names the promoted node;
* SIGTERM ends with ``STOPPING=1`` and exit code 0.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP
from xds.lab import SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.lab.process import ManagedProcess

pytestmark = pytest.mark.integration


class Notifications:
    """The datagrams the control plane sent to our notify socket, in order."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.seen: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.seen.append((time.monotonic(), self.sock.recv(4096).decode()))
            except BlockingIOError:
                return [m for _, m in self.seen]

    def wait_for(self, predicate: str, timeout: float) -> str:
        def found() -> str | None:
            return next((m for m in self.drain() if predicate in m), None)

        return wait_until(found, timeout, interval=0.02, what=f"notify message with {predicate!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.close()


def test_serve_speaks_the_notify_protocol(tmp_path: Path, notify: Notifications) -> None:
    """READY=1 (with STATUS naming the primary) once serving, WATCHDOG=1 at half the
    interval, STATUS following a failover, STOPPING=1 and exit 0 on SIGTERM."""
    cluster = SentinelCluster.start(tmp_path, groups=(GROUP,))
    try:
        listen = Address("127.0.0.1", free_port())
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        text = config_yaml(cluster.sentinel_addresses, {GROUP: listen}, xds, admin)
        cp = ControlPlane(tmp_path, text, xds, admin)
        env = dict(os.environ, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000")
        argv = [sys.executable, "-m", "xds.ops.cli", "serve", "--config", str(cp.config_path)]
        process = ManagedProcess(argv, cp.directory, name="notify-serve", env=env)
        try:
            primary = cluster.current_primary(GROUP)
            ready = notify.wait_for("READY=1", 30)
            assert cp.ready(), "READY=1 was sent before /readyz said ready"
            assert f"STATUS={GROUP} -> {primary.address}" in ready

            first = len(notify.drain())
            wait_until(
                lambda: notify.drain()[first:].count("WATCHDOG=1") >= 3,
                5,
                what="three watchdog pings",
            )
            pings = [t for t, m in notify.seen if m == "WATCHDOG=1"]
            gaps = [b - a for a, b in zip(pings[-3:], pings[-2:], strict=False)]
            assert all(gap < 0.9 for gap in gaps), gaps  # half of WATCHDOG_USEC, plus slack

            primary.kill()
            new = cluster.wait_failover(GROUP, primary.address)
            notify.wait_for(f"STATUS={GROUP} -> {new.address}", 20)

            process.send_signal(signal.SIGTERM)
            wait_until(lambda: not process.alive, 15, what="serve to exit after SIGTERM")
            assert process.stop() == 0  # reaps it: the exit status of a clean shutdown
            notify.wait_for("STOPPING=1", 2)
        finally:
            process.stop()
    finally:
        cluster.stop()
        stop_all()
