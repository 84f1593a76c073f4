"""Failover-to-switch and /healthz latency with and without a hostile Node flood, side by side.

Goal (issue 12): with hostile xDS clients flooding the server with large
Nodes, the failover path keeps its latency: failover-to-switch (Envoy's
/clusters on the promoted replica, after that replica reports ``ROLE``
master), /healthz and a new sidecar's first config within 2x of the quiet
figures measured in the same run.

One topology for the whole run (``bench.failover_kill.Bench``: a Redis
primary/replica, three Sentinels with ``down-after-milliseconds 1000``,
``sentinel-xds serve`` with the shipped defaults, one Envoy sidecar writing
``SET`` every 10 ms). Rounds alternate *quiet* and *flood*; a flood round
first starts ``tests.flood`` (a process of its own: four clients, half
re-sending issue 12's 3 MB Node of 280,000 numbers, half Nodes just under the
limits with a new id per stream) and waits until it flows. Each round then
``kill -9``s the primary (or sends ``SENTINEL FAILOVER``) exactly as
``bench.failover_kill`` does, while /healthz is fetched every 50 ms; after the
switch a new Envoy is started and timed until its /clusters shows the new
primary. ``loop.stalled`` and ``failover.aborted`` lines in the control
plane's log are counted per round.

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.hostile_flood [--rounds 5] [--scenarios kill]
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench.common import stats
from bench.failover_kill import GROUP, Bench
from redis_sentinel_watch import Address
from tests.flood import LatencyProbe, flood_progress, start_flood
from xds.lab import EnvoyProcess, free_port, stop_all, wait_until
from xds.lab.process import install_sigterm_handler
from xds.resources.bootstrap import bootstrap_yaml

DEFAULT_OUT = Path(__file__).parent / "results" / "hostile_flood.json"
FLOOD_CLIENTS = 4
MODES = ("quiet", "flood")


@dataclass
class Round:
    mode: str
    scenario: str
    n: int
    envoy_after_replica_master_ms: float | None
    replica_master_ms: float | None
    healthz_ms: dict[str, float]
    new_sidecar_first_config_ms: float
    flood_requests: int
    flood_mb: float
    loop_stalls: int
    failovers_aborted: int


def _healthz_stats(probe: LatencyProbe) -> dict[str, float]:
    xs = [x * 1000 for x in probe.latencies]
    return {
        "n": float(len(xs)),
        "median": round(statistics.median(xs), 1) if xs else 0.0,
        "p90": round(probe.percentile(0.9) * 1000, 1),
        "max": round(max(xs), 1) if xs else 0.0,
        "failures": float(probe.failures),
    }


def new_sidecar_first_config_ms(bench: Bench, workdir: Path, name: str) -> float:
    """Start a new Envoy and time it until its /clusters shows the current primary."""
    assert bench.cp is not None
    primary = bench.cluster.current_primary(GROUP).address
    admin = Address("127.0.0.1", free_port())
    listen = {GROUP: Address("127.0.0.1", free_port())}
    started = time.monotonic()
    envoy = EnvoyProcess.start(
        workdir, bootstrap_yaml(name, [bench.cp.xds], admin=admin, listen=listen), admin.port,
        name=name,
    )  # fmt: skip
    try:
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary], timeout=60)
        return round((time.monotonic() - started) * 1000, 1)
    finally:
        envoy.stop()


def one_round(bench: Bench, workdir: Path, mode: str, scenario: str, n: int) -> Round:
    assert bench.cp is not None
    cp = bench.cp
    stalls_before = len(cp.events("loop.stalled"))
    aborted_before = len(cp.events("failover.aborted"))
    flood = None
    if mode == "flood":
        flood = start_flood(workdir / f"flood-{scenario}-{n}", cp.xds, FLOOD_CLIENTS, 600)
        wait_until(lambda: flood_progress(flood)["requests"] >= 100, 30, what="the flood")
    before = flood_progress(flood) if flood else {"requests": 0, "bytes": 0}
    try:
        with LatencyProbe(f"http://{cp.admin}/healthz", interval=0.05) as healthz:
            r = bench.round("default", scenario, n)
            first_config = new_sidecar_first_config_ms(
                bench, workdir, f"late-{mode}-{scenario}-{n}"
            )
        after = flood_progress(flood) if flood else before
    finally:
        if flood is not None:
            flood.stop()
    return Round(
        mode,
        scenario,
        n,
        r.envoy_after_replica_master_ms,
        r.replica_master_ms,
        _healthz_stats(healthz),
        first_config,
        after["requests"] - before["requests"],
        round((after["bytes"] - before["bytes"]) / 1e6, 1),
        len(cp.events("loop.stalled")) - stalls_before,
        len(cp.events("failover.aborted")) - aborted_before,
    )


def summarize(rounds: list[Round]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        rs = [r for r in rounds if r.mode == mode]
        if not rs:
            continue
        out[mode] = {
            "rounds": len(rs),
            "envoy_after_replica_master_ms": stats([r.envoy_after_replica_master_ms for r in rs]),
            "healthz_median_ms": stats([r.healthz_ms["median"] for r in rs]),
            "healthz_p90_ms": stats([r.healthz_ms["p90"] for r in rs]),
            "healthz_max_ms": stats([r.healthz_ms["max"] for r in rs]),
            "new_sidecar_first_config_ms": stats([r.new_sidecar_first_config_ms for r in rs]),
            "flood_requests_per_round": stats([float(r.flood_requests) for r in rs]),
            "flood_mb_per_round": stats([r.flood_mb for r in rs]),
            "loop_stalls": sum(r.loop_stalls for r in rs),
            "failovers_aborted": sum(r.failovers_aborted for r in rs),
        }
    if "quiet" in out and "flood" in out:
        ratios: dict[str, float | None] = {}
        for key in ("envoy_after_replica_master_ms", "healthz_median_ms", "healthz_p90_ms",
                    "new_sidecar_first_config_ms"):  # fmt: skip
            quiet, flood = out["quiet"][key]["median"], out["flood"][key]["median"]
            ratios[key] = round(flood / quiet, 2) if quiet and flood is not None else None
        out["flood_over_quiet_median"] = ratios
    return out


def main(argv: list[str] | None = None) -> int:
    p = common.parser(
        "bench.hostile_flood", __doc__, rounds=5, rounds_help="rounds per mode (quiet, flood)"
    )
    p.add_argument("--scenarios", default="kill", help="kill, failover or both")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, help="keep process logs here")
    args = p.parse_args(argv)
    scenarios = common.choices(p, "--scenarios", args.scenarios, ("kill", "failover"))
    install_sigterm_handler()
    rounds: list[Round] = []
    with common.work_directory(args.workdir, "bench-hostile-") as workdir:
        bench = Bench(workdir)
        try:
            bench.start_variant("default")
            for n in range(1, args.rounds + 1):
                for scenario in scenarios:
                    for mode in MODES:
                        r = one_round(bench, workdir, mode, scenario, n)
                        rounds.append(r)
                        switch = r.envoy_after_replica_master_ms
                        print(
                            f"{mode:5} {scenario:8} #{n:<2} envoy +{switch} ms after master, "
                            f"/healthz median {r.healthz_ms['median']} ms max "
                            f"{r.healthz_ms['max']} ms, new sidecar {r.new_sidecar_first_config_ms}"
                            f" ms, flood {r.flood_requests} req / {r.flood_mb} MB, "
                            f"stalls {r.loop_stalls}, aborted {r.failovers_aborted}",
                            flush=True,
                        )
        finally:
            bench.stop()
            stop_all()
    result = common.result(
        "hostile_flood",
        common.machine("shared machine: other work may have run at the same time"),
        summarize(rounds),
        rounds,
        setup="1 primary + 1 replica, 3 Sentinels, down-after 1000 ms; sentinel-xds serve "
        f"with default limits; flood: {FLOOD_CLIENTS} clients in their own process "
        "(tests/flood.py), half taking turns with a 3 MB Node (280,000 numbers), ~480 KB "
        "of SotW names and ~480 KB of Delta initial versions, half ~235 KB Nodes (4,000 "
        "values) with a new id per stream; /healthz every 50 ms during each round",
        goals="flood within 2x of quiet: failover-to-switch, /healthz, new sidecar config",
    )
    common.write_result(args.out, result, result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
