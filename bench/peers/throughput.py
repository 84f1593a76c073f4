"""Throughput of the sidecar against Redis directly, with ``redis-benchmark``, as ratios.

The sidecar is an extra hop on every command; what it costs is best stated as a
ratio to talking to Redis directly, measured in the same run on the same
machine (absolute numbers on a 2-core machine running Redis, Envoy and the
benchmark client together say little). HAProxy (default config) is measured the
same way for reference. Targets are interleaved within each repetition so slow
drifts of the machine hit all of them alike.
"""

from __future__ import annotations

import csv
import io
import statistics
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from redis_sentinel_watch import Address

from .stats import spread

__all__ = ["BENCH_SETTINGS", "run_throughput"]

BENCH_SETTINGS: dict[str, Any] = {
    "tests": "set,get",
    "clients": 50,
    "random_keys": 100000,
    "requests": {"1": 50000, "16": 250000},
}


def _redis_benchmark(address: Address, pipeline: int) -> dict[str, dict[str, float]]:
    """One ``redis-benchmark --csv`` run → ``{"SET": {"rps": ..., "p50_ms": ...}, ...}``."""
    argv = [
        "redis-benchmark",
        "-h",
        address.host,
        "-p",
        str(address.port),
        "-t",
        BENCH_SETTINGS["tests"],
        "-n",
        str(BENCH_SETTINGS["requests"][str(pipeline)]),
        "-c",
        str(BENCH_SETTINGS["clients"]),
        "-r",
        str(BENCH_SETTINGS["random_keys"]),
        "-P",
        str(pipeline),
        "--csv",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed on {address}: {done.stderr.strip()[:500]}")
    out: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(done.stdout)):
        out[row["test"]] = {
            "rps": float(row["rps"]),
            "p50_ms": float(row["p50_latency_ms"]),
            "p99_ms": float(row["p99_latency_ms"]),
        }
    if set(out) != {"SET", "GET"}:
        raise RuntimeError(f"redis-benchmark on {address}: unexpected output {done.stdout!r}")
    return out


def run_throughput(
    targets: Mapping[str, Address], reps: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """``reps`` interleaved repetitions over ``targets`` (must include ``direct``).

    Returns raw runs, and per target / pipeline depth / command the spread of the
    requests per second and of the ratio to ``direct`` in the same repetition.
    """
    runs: list[dict[str, Any]] = []
    for rep in range(1, reps + 1):
        for pipeline in (1, 16):
            results = {name: _redis_benchmark(addr, pipeline) for name, addr in targets.items()}
            runs.append({"rep": rep, "pipeline": pipeline, "results": results})
            say(
                f"throughput rep {rep} -P {pipeline}: "
                + ", ".join(
                    f"{name} SET {r['SET']['rps']:.0f}/s GET {r['GET']['rps']:.0f}/s"
                    for name, r in results.items()
                )
            )
    summary: dict[str, Any] = {}
    for name in targets:
        for pipeline in (1, 16):
            for test in ("SET", "GET"):
                mine = [r for r in runs if r["pipeline"] == pipeline]
                rps = [r["results"][name][test]["rps"] for r in mine]
                ratio = [
                    r["results"][name][test]["rps"] / r["results"]["direct"][test]["rps"]
                    for r in mine
                ]
                p50 = [r["results"][name][test]["p50_ms"] for r in mine]
                summary.setdefault(name, {}).setdefault(f"P{pipeline}", {})[test] = {
                    "rps": spread(rps),
                    "ratio_to_direct": spread(ratio),
                    "p50_ms_median": statistics.median(p50),
                }
    return {"settings": BENCH_SETTINGS, "reps": reps, "runs": runs, "summary": summary}
