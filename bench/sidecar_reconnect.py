"""How long a sidecar stays on a dead primary after its control plane comes back.

The case: every control-plane replica is down (an upgrade, a crash) while
Sentinel fails the primary over; the sidecars keep their last config, so they
route to the old primary until a control plane is back and they have
reconnected. How soon they reconnect is Envoy's ADS retry back-off, which the
bootstrap sets (``xds.resources.bootstrap.ADS_RETRY_BACK_OFF``).

One primary/replica pair, three Sentinels, one ``sentinel-xds serve`` and one
Envoy per back-off variant. Each round: stop the control plane, ``SENTINEL
FAILOVER`` while it is down, keep it down for ``--outage`` seconds in all,
start it again on the same port, and measure from that start (and from the
moment its ``/readyz`` says ready) to Envoy's ``/clusters`` showing the new
primary. Variants: the bootstrap's back-off, the 0.25 s..5 s it had before,
and Envoy's default (no ``retry_policy``: 0.5 s..30 s).

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.sidecar_reconnect [--rounds 5] [--outage 10]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import yaml

from bench.common import RESULTS_DIR, one_group_lab, parser, utc_now, write_result
from bench.peers.machine import machine_info
from redis_sentinel_watch import Address
from redis_sentinel_watch.blocking import command
from xds.lab import EnvoyProcess, SentinelCluster, free_port, wait_until
from xds.lab.controlplane import ControlPlane
from xds.lab.process import install_sigterm_handler
from xds.resources.bootstrap import ADS_RETRY_BACK_OFF, bootstrap_dict

RESULTS = RESULTS_DIR / "sidecar_reconnect.json"
GROUP = "mymaster"
#: variant name -> the ADS retry back-off in the bootstrap (None: Envoy's default)
VARIANTS: dict[str, dict[str, str] | None] = {
    "bootstrap": dict(ADS_RETRY_BACK_OFF),
    "previous 0.25s..5s": {"base_interval": "0.25s", "max_interval": "5s"},
    "envoy default": None,
}


def _bootstrap(xds: Address, admin: Address, back_off: dict[str, str] | None) -> str:
    boot = bootstrap_dict("bench-sidecar", [xds], admin=admin)
    (grpc,) = boot["dynamic_resources"]["ads_config"]["grpc_services"]
    if back_off is None:
        del grpc["envoy_grpc"]["retry_policy"]
    else:
        grpc["envoy_grpc"]["retry_policy"] = {"retry_back_off": back_off}
    return yaml.safe_dump(boot, sort_keys=False)


def _round(
    cluster: SentinelCluster, cp: ControlPlane, envoy: EnvoyProcess, outage: float
) -> tuple[float, float]:
    old = cluster.current_primary(GROUP)
    envoy.wait_cluster_hosts(f"redis/{GROUP}", [old.address], timeout=30)
    cp.stop()
    down_since = time.monotonic()
    with cluster.sentinels[0].client() as c:
        command(c, "SENTINEL", "FAILOVER", GROUP)
    new = cluster.wait_failover(GROUP, old.address)
    wait_until(
        lambda: all(s.master_addr(GROUP) == new.address for s in cluster.sentinels),
        30,
        what="every Sentinel to name the new primary",
    )
    old.wait_replica_synced(30)  # so that the next round can fail back
    if envoy.cluster_hosts(f"redis/{GROUP}") != [old.address]:
        raise RuntimeError("the sidecar moved without a control plane")
    time.sleep(max(0.0, outage - (time.monotonic() - down_since)))  # the scenario's outage
    return restart_until_switched(cp, envoy, new.address)


def restart_until_switched(
    cp: ControlPlane, envoy: EnvoyProcess, new: Address, timeout: float = 60.0
) -> tuple[float, float]:
    """Start the (stopped) control plane; seconds from that start, and from its
    ``/readyz`` first saying ready, until Envoy's ``/clusters`` shows ``new``."""
    started = time.monotonic()
    cp.start(wait_ready=False)
    ready_at: list[float] = []

    def switched() -> bool:
        if not ready_at and cp.ready():
            ready_at.append(time.monotonic())
        return envoy.cluster_hosts(f"redis/{GROUP}") == [new]

    wait_until(switched, timeout, interval=0.01, what=f"the sidecar on the new primary {new}")
    done = time.monotonic()
    if not ready_at:  # switched between two polls of /readyz
        wait_until(cp.ready, timeout, what="control plane ready")
        ready_at.append(done)
    return done - started, done - ready_at[0]


def main(argv: list[str] | None = None) -> int:
    p = parser("bench.sidecar_reconnect", __doc__, rounds=5)
    p.add_argument("--outage", type=float, default=10.0, help="seconds the control plane is down")
    args = p.parse_args(argv)
    install_sigterm_handler()
    results: dict[str, dict[str, Any]] = {}
    with one_group_lab("sx-reconnect-", GROUP) as lab:
        workdir, cluster, listen, cp = lab.workdir, lab.cluster, lab.listen, lab.cp
        for n, (variant, back_off) in enumerate(VARIANTS.items()):
            admin = Address("127.0.0.1", free_port())
            envoy = EnvoyProcess.start(
                workdir, _bootstrap(cp.xds, admin, back_off), admin.port, name=f"sidecar-{n}"
            )
            envoy.wait_listener(listen.port, timeout=30)
            from_start: list[float] = []
            from_ready: list[float] = []
            for r in range(args.rounds):
                total, after_ready = _round(cluster, cp, envoy, args.outage)
                from_start.append(round(total, 3))
                from_ready.append(round(after_ready, 3))
                print(
                    f"{variant} round {r + 1}: {total:.2f} s after the restart, "
                    f"{after_ready:.2f} s after ready",
                    flush=True,
                )
            envoy.stop()
            results[variant] = {
                "retry_back_off": back_off,
                "seconds_from_restart": from_start,
                "seconds_from_ready": from_ready,
                "median_from_restart": statistics.median(from_start),
                "median_from_ready": statistics.median(from_ready),
                "max_from_ready": max(from_ready),
            }
    summary = {
        "when": utc_now(),
        "machine": {**machine_info(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "outage_s": args.outage,
        "variants": results,
    }
    write_result(RESULTS, summary, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
