"""``sentinel-xds demo``: the whole story on one machine, in under a minute.

Starts a Redis primary and replica, three Sentinels, the control plane and one
Envoy sidecar on free loopback ports in a temporary directory; writes through
the sidecar on a single connection; kills the primary; and prints what
happened in a few lines. Everything it started is stopped on exit, on error
and on Ctrl-C.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_sentinel_watch import Address, ReplyError, TimedOutError, UnreachableError
from redis_sentinel_watch.blocking import SingleConnection
from xds.lab import SentinelCluster, free_port, install_sigterm_handler, stop_all
from xds.lab.controlplane import ControlPlane
from xds.lab.process import live_processes, wait_until

__all__ = ["run_demo"]

GROUP = "mymaster"


@dataclass
class _Writes:
    acked: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    recovered_at: float | None = None
    connection_lost: str | None = None


class _Writer(threading.Thread):
    """SET demo:<n> every 10 ms on ONE connection that is never re-opened."""

    def __init__(self, listen: Address) -> None:
        super().__init__(daemon=True)
        # RESP2 (Envoy's redis_proxy does not speak RESP3) on one connection, never re-opened
        self.conn = SingleConnection(listen, timeout_s=10)
        self.writes = _Writes()
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            key = f"demo:{n}"
            try:
                reply = self.conn.command("SET", key, str(n))
                if reply == "OK":
                    self.writes.acked.append(key)
                    if self.writes.errors and self.writes.recovered_at is None:
                        self.writes.recovered_at = time.monotonic()
            except (ReplyError, TimedOutError) as exc:  # the command failed, not the connection
                self.writes.errors.append((time.monotonic(), str(exc)))
            except UnreachableError as exc:
                self.writes.connection_lost = str(exc)
                return
            self.stopping.wait(0.01)

    def stop(self) -> _Writes:
        self.stopping.set()
        self.join(timeout=15)
        self.conn.close()
        return self.writes


def _say(text: str = "") -> None:
    print(text, flush=True)


def _event(cp: ControlPlane, name: str) -> dict[str, Any] | None:
    found = cp.events(name)
    return found[-1] if found else None


def run_demo(keep_running: bool = False) -> int:
    """Run the demo; returns the process exit code (0 when the failover went as promised)."""
    install_sigterm_handler()
    workdir = Path(tempfile.mkdtemp(prefix="sentinel-xds-demo-"))
    ok = False
    try:
        ok = _run(workdir, keep_running)
    except KeyboardInterrupt:
        _say("\ninterrupted")
    finally:
        left = len(live_processes())
        stop_all()
        still = len(live_processes())
        _say(f"stopped {left} processes; {still} left running.")
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _say(f"logs kept in {workdir}")
    return 0 if ok else 1


def _run(workdir: Path, keep_running: bool) -> bool:
    _say(f"sentinel-xds demo: everything on 127.0.0.1, files in {workdir}")
    cluster = SentinelCluster.start(workdir, groups=(GROUP,), down_after_ms=1000)
    primary = cluster.current_primary(GROUP).address
    replica = cluster.replicas[GROUP][0].address
    _say(f"  redis          primary {primary}, replica {replica}")
    _say(
        f"  sentinels      {', '.join(str(a) for a in cluster.sentinel_addresses)} "
        "(quorum 2, down-after 1000 ms)"
    )
    listen = Address("127.0.0.1", free_port())
    cp = ControlPlane.for_topology(workdir, cluster.sentinel_addresses, {GROUP: listen}).start()
    _say(f"  control plane  xDS {cp.xds}, status http://{cp.admin}/status")
    envoy = cp.start_sidecar(workdir, "demo-sidecar", listen)
    envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary], timeout=20)
    _say(f"  envoy sidecar  redis on {listen} -> {primary}, admin http://{envoy.admin}/")
    _say()

    writer = _Writer(listen)
    writer.start()
    wait_until(lambda: len(writer.writes.acked) >= 100, 15, what="first writes")
    _say(
        f"app writes SET demo:<n> every 10 ms through the sidecar: "
        f"{len(writer.writes.acked)} OK so far"
    )
    _say(f"kill -9 the primary {primary} ...")
    cluster.node(primary).kill()
    killed_at = time.monotonic()
    new = cluster.wait_failover(GROUP, primary, timeout=30).address
    promoted_at = time.monotonic()
    envoy.wait_cluster_hosts(f"redis/{GROUP}", [new], timeout=20)
    before = len(writer.writes.acked)
    wait_until(lambda: len(writer.writes.acked) - before >= 100, 20, what="writes after failover")
    wait_until(lambda: _event(cp, "failover.completed"), 15, what="failover.completed event")
    writes = writer.stop()

    fo = _event(cp, "failover.completed") or {}
    window = (
        writes.recovered_at - writes.errors[0][0] if writes.errors and writes.recovered_at else 0.0
    )
    kinds = sorted({e for _, e in writes.errors})
    client = cluster.node(new).client()
    try:
        missing = [k for k in writes.acked[before:] if not client.exists(k)]
    finally:
        client.close()

    _say(
        f"  sentinels      a majority names {new} {promoted_at - killed_at:.2f} s after the "
        "kill (the sidecar switched earlier, as soon as the replica reported master)"
    )
    _say(
        f"  control plane  failover.completed: trigger {fo.get('trigger')}, "
        f"first sign -> switch {fo.get('detect_to_switch_ms')} ms, "
        f"-> all ACKed {fo.get('detect_to_acked_ms')} ms, "
        f"{fo.get('acked')}/{fo.get('sidecars')} sidecars ACKed"
    )
    _say(
        f"  envoy /clusters: redis/{GROUP} -> {', '.join(map(str, envoy.cluster_hosts('redis/')))}"
    )
    _say(
        f"  app            {len(writes.errors)} failed writes over {window:.2f} s "
        f"({'; '.join(kinds) or 'none'}), then OK again"
    )
    _say(
        f"  app            connection to the sidecar kept: "
        f"{'yes' if writes.connection_lost is None else 'NO: ' + writes.connection_lost}"
    )
    _say(
        f"  app            writes acknowledged after the failover present on {new}: "
        f"{'all' if not missing else f'{len(missing)} MISSING'}"
    )
    ok = writes.connection_lost is None and not missing and envoy.cluster_hosts("redis/") == [new]
    if keep_running:
        _say("\nstill running; Ctrl-C to stop")
        while True:
            time.sleep(3600)
    return ok


if __name__ == "__main__":
    sys.exit(run_demo())
