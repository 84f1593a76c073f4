"""Throughput, one-client latency and CPU per command of each proxy, as ratios to direct.

The sidecar is an extra hop on every command; what it costs is best stated as a
ratio to talking to Redis directly, measured in the same run on the same
machine (absolute numbers on a 2-core machine running Redis, Envoy and the
benchmark client together say little). Measured side by side with
``redis-benchmark``:

* ``direct``: Redis itself (its CPU per command is the yardstick for the others);
* ``sidecar``: the Envoy sidecar (``redis_proxy``, config from sentinel-xds);
* ``envoy-tcp``: the same Envoy binary with ``tcp_proxy`` to the primary
  (:mod:`bench.peers.tcp_proxy`), so the gap between it and the sidecar is the
  price of parsing every command;
* ``haproxy``: HAProxy (the published role check; a TCP proxy as well).

Three workloads: 50 clients without and with ``-P 16`` (throughput), and one
client without pipelining (the latency one request adds). Each run lasts
several seconds (``redis-benchmark`` 7.0 has no duration option: request
counts are sized for ~5 s against Redis directly); short runs on a shared
machine gave ratios that did not reproduce. Targets are interleaved within each
repetition, in an order rotated from one repetition to the next, so slow drifts
of the machine hit all of them alike. CPU per command is read from
``/proc/<pid>/stat`` (user + system time of every thread) around each run.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis_sentinel_watch import Address

from .stats import spread

__all__ = [
    "TARGETS",
    "WORKLOADS",
    "Target",
    "Workload",
    "cpu_seconds",
    "parse_csv",
    "run_throughput",
    "summarize_runs",
]

#: target names, in the order tables show them (``direct`` first: the reference)
TARGETS = ("direct", "sidecar", "envoy-tcp", "haproxy")
TESTS = ("SET", "GET")
RANDOM_KEYS = 100000


@dataclass(frozen=True)
class Workload:
    """One ``redis-benchmark`` shape; ``requests`` per command, sized for ~5 s direct."""

    name: str
    clients: int
    pipeline: int
    requests: dict[str, int]

    def settings(self) -> dict[str, Any]:
        return {"clients": self.clients, "pipeline": self.pipeline, "requests": self.requests}


WORKLOADS: tuple[Workload, ...] = (
    Workload("c50-P1", 50, 1, {"SET": 350_000, "GET": 400_000}),
    Workload("c50-P16", 50, 16, {"SET": 3_000_000, "GET": 3_500_000}),
    Workload("c1-P1", 1, 1, {"SET": 90_000, "GET": 160_000}),
)


@dataclass(frozen=True)
class Target:
    """Where ``redis-benchmark`` connects, and the process whose CPU it costs."""

    name: str
    address: Address
    pid: int


def cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    """User + system CPU of a process, all its threads included (``/proc/<pid>/stat``).

    Fields are counted after the last ``)``: the command name may contain spaces.
    """
    text = (proc / str(pid) / "stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # after the name: state is field 3, utime field 14, stime field 15 (1-based)
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def parse_csv(text: str, test: str) -> dict[str, float]:
    """``redis-benchmark --csv`` output for one test → rps, p50 and p99 in ms."""
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("test") == test:
            return {
                "rps": float(row["rps"]),
                "p50_ms": float(row["p50_latency_ms"]),
                "p99_ms": float(row["p99_latency_ms"]),
            }
    raise RuntimeError(f"redis-benchmark: no {test} row in {text!r}")


def _redis_benchmark(
    target: Target, workload: Workload, test: str, scale: float
) -> dict[str, float]:
    """One run of one command; adds ``cpu_us_per_command`` of the target's process."""
    requests = max(100, int(workload.requests[test] * scale))
    argv = ["redis-benchmark", "-h", target.address.host, "-p", str(target.address.port)]
    argv += ["-t", test.lower(), "-n", str(requests), "-c", str(workload.clients)]
    argv += ["-r", str(RANDOM_KEYS), "-P", str(workload.pipeline), "--csv"]
    before = cpu_seconds(target.pid)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    after = cpu_seconds(target.pid)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed on {target.name}: {done.stderr.strip()[:500]}")
    out = parse_csv(done.stdout, test)
    out["requests"] = requests
    out["cpu_us_per_command"] = (after - before) / requests * 1e6
    return out


def _rotated(targets: Sequence[Target], rep: int) -> list[Target]:
    k = (rep - 1) % len(targets)
    return [*targets[k:], *targets[:k]]


def run_throughput(
    targets: Sequence[Target],
    reps: int,
    say: Callable[[str], None],
    scale: float = 1.0,
    workloads: Sequence[Workload] = WORKLOADS,
) -> dict[str, Any]:
    """``reps`` interleaved repetitions over ``targets`` (must include ``direct``).

    ``scale`` multiplies every request count (a smoke run uses a tiny one).
    Returns the settings, the raw runs and :func:`summarize_runs`.
    """
    if "direct" not in {t.name for t in targets}:
        raise ValueError("throughput targets must include 'direct'")
    runs: list[dict[str, Any]] = []
    for rep in range(1, reps + 1):
        for workload in workloads:
            results: dict[str, dict[str, dict[str, float]]] = {}
            for target in _rotated(targets, rep):
                results[target.name] = {
                    test: _redis_benchmark(target, workload, test, scale) for test in TESTS
                }
            # per run: the machine is shared, and a neighbour's burst explains an outlier
            load = round(os.getloadavg()[0], 2)
            runs.append(
                {"rep": rep, "workload": workload.name, "load_average_1m": load, "results": results}
            )
            say(
                f"throughput rep {rep} {workload.name}: "
                + ", ".join(
                    f"{name} SET {r['SET']['rps']:.0f}/s GET {r['GET']['rps']:.0f}/s"
                    for name, r in results.items()
                )
            )
    return {
        "settings": {
            "tool": "redis-benchmark",
            "random_keys": RANDOM_KEYS,
            "scale": scale,
            "workloads": {w.name: w.settings() for w in workloads},
            "targets": {t.name: str(t.address) for t in targets},
        },
        "reps": reps,
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def summarize_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per target / workload / command: spreads of rps, ratio to direct, CPU per command,
    and latency added over direct (µs, same repetition) at p50 and p99.

    Every comparison is paired: a target's run against ``direct``'s run in the
    same repetition and workload, never against an average of other repetitions.
    """
    summary: dict[str, Any] = {}
    names = [n for n in TARGETS if any(n in r["results"] for r in runs)]
    names += sorted({n for r in runs for n in r["results"]} - set(names))
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    for name in names:
        for workload in workloads:
            mine = [r for r in runs if r["workload"] == workload and name in r["results"]]
            for test in TESTS:
                got = [r["results"][name][test] for r in mine]
                direct = [r["results"]["direct"][test] for r in mine]
                cell: dict[str, Any] = {
                    "rps": spread(g["rps"] for g in got),
                    "ratio_to_direct": spread(
                        g["rps"] / d["rps"] for g, d in zip(got, direct, strict=True)
                    ),
                    "p50_ms_median": statistics.median(g["p50_ms"] for g in got),
                    "p99_ms_median": statistics.median(g["p99_ms"] for g in got),
                    "added_p50_us": spread(
                        (g["p50_ms"] - d["p50_ms"]) * 1000 for g, d in zip(got, direct, strict=True)
                    ),
                    "added_p99_us": spread(
                        (g["p99_ms"] - d["p99_ms"]) * 1000 for g, d in zip(got, direct, strict=True)
                    ),
                    "cpu_us_per_command": spread(
                        g["cpu_us_per_command"] for g in got if "cpu_us_per_command" in g
                    ),
                }
                summary.setdefault(name, {}).setdefault(workload, {})[test] = cell
    return summary
