"""How fast a sidecar moves to another control-plane replica when its own one fails.

One Redis primary/replica pair with three Sentinels, three ``sentinel-xds
serve`` replicas with the same config, and one Envoy whose bootstrap (from
``sentinel-xds bootstrap``) lists all three. Each round finds the replica
holding the sidecar's ADS stream and then:

* ``kill``: ``kill -9`` it (the others alive);
* ``kill-with-dead-peer``: first ``kill -9`` another replica, then it (so the
  sidecar's round-robin may pick the dead one first);
* ``freeze``: ``SIGSTOP`` it (the TCP connection stays open and silent, as with
  a hung process or a partition; only HTTP/2 keepalive notices).

Measured: from the fault to the moment a surviving replica's ``/status`` shows
the sidecar SYNCED on Listener, Cluster and endpoints. Killed replicas are
restarted, frozen ones resumed, between rounds.

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.ha_reconnect [--rounds 5]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, parser, utc_now, write_result
from redis_sentinel_watch import Address
from xds.lab import EnvoyProcess, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.lab.process import install_sigterm_handler
from xds.resources.bootstrap import bootstrap_yaml

RESULTS = RESULTS_DIR / "ha.json"
NODE = "bench-sidecar"
SCENARIOS = ("kill", "kill-with-dead-peer", "freeze")


def _synced(cp: ControlPlane) -> bool:
    try:
        sidecars = cp.status().sidecars
    except OSError:
        return False
    types = ("Listener", "Cluster", "ClusterLoadAssignment")
    return any(sc.node_id == NODE and sc.synced(*types) for sc in sidecars)


def _holder(replicas: list[ControlPlane]) -> ControlPlane:
    found = wait_until(
        lambda: [cp for cp in replicas if cp.alive and _synced(cp)], 30, what="a synced sidecar"
    )
    return found[0]


def _round(scenario: str, replicas: list[ControlPlane]) -> float:
    holder = _holder(replicas)
    others = [cp for cp in replicas if cp is not holder]
    if scenario == "kill-with-dead-peer":
        others[0].kill()
        others = others[1:]
    started = time.monotonic()
    if scenario == "freeze":
        assert holder.process is not None
        holder.process.pause()
    else:
        holder.kill()
    wait_until(lambda: any(_synced(cp) for cp in others), 60, interval=0.01, what="failover")
    elapsed = time.monotonic() - started
    if scenario == "freeze":
        assert holder.process is not None
        holder.process.resume()
    for cp in replicas:
        if not cp.alive:
            cp.start()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = parser("bench.ha_reconnect", __doc__, rounds=5).parse_args(argv)
    install_sigterm_handler()
    results: dict[str, list[float]] = {s: [] for s in SCENARIOS}
    with tempfile.TemporaryDirectory(prefix="sx-ha-") as tmp:
        workdir = Path(tmp)
        cluster = SentinelCluster.start(workdir)
        try:
            listen = Address("127.0.0.1", free_port())
            replicas = []
            for i in range(3):
                xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
                text = config_yaml(cluster.sentinel_addresses, {"mymaster": listen}, xds, admin)
                replicas.append(ControlPlane(workdir, text, xds, admin, name=f"cp{i}").start())
            admin_port = free_port()
            EnvoyProcess.start(
                workdir,
                bootstrap_yaml(
                    NODE, [cp.xds for cp in replicas], admin=Address("127.0.0.1", admin_port)
                ),
                admin_port,
                name=NODE,
            ).wait_listener(listen.port, timeout=30)
            for scenario in SCENARIOS:
                for n in range(args.rounds):
                    seconds = _round(scenario, replicas)
                    results[scenario].append(round(seconds, 3))
                    print(f"{scenario} round {n + 1}: {seconds * 1000:.0f} ms", flush=True)
        finally:
            stop_all()
            cluster.stop()
    summary: dict[str, Any] = {
        "when": utc_now(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
        },
        "bootstrap": "keepalive 5s/3s, retry back-off 0.25s..5s, round robin, 3 replicas",
        "seconds_to_synced_on_another_replica": {
            s: {
                "rounds": v,
                "median": statistics.median(v),
                "max": max(v),
            }
            for s, v in results.items()
        },
    }
    write_result(RESULTS, summary, summary["seconds_to_synced_on_another_replica"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
