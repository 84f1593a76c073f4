"""What the timed benchmarks share: their common flags, machine facts, the result file.

Every ``python -m bench.X`` here runs rounds on loopback, prints one line per
round, then writes one JSON document to ``bench/results/`` and prints its
summary. The parts that must not differ between them (the UTC stamp, how the
file is written, the p90 rule of the summaries, where process logs go) live
here; what each measures and how it sums it up stay in its own module.
(``bench.peers`` is a package of its own with its own report code.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redis_sentinel_watch import Address
from xds.lab import SentinelCluster, free_port, stop_all
from xds.lab.controlplane import ControlPlane

__all__ = [
    "RESULTS_DIR",
    "OneGroupLab",
    "choices",
    "cpus",
    "loadavg",
    "machine",
    "one_group_lab",
    "parser",
    "result",
    "stats",
    "utc_now",
    "work_directory",
    "write_result",
]

RESULTS_DIR = Path(__file__).parent / "results"


def parser(
    prog: str, doc: str | None, *, rounds: int, rounds_help: str | None = None
) -> argparse.ArgumentParser:
    """An argument parser described by the first line of the module docstring, with
    ``--rounds`` (default ``rounds``)."""
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    p.add_argument("--rounds", type=int, default=rounds, help=rounds_help)
    return p


def choices(p: argparse.ArgumentParser, flag: str, text: str, known: Sequence[str]) -> list[str]:
    """A comma-separated flag value, each item one of ``known`` (else a usage error, exit 2)."""
    items = [s for s in text.split(",") if s]
    for item in items:
        if item not in known:
            p.error(f"{flag}: unknown {item!r}; choose from {', '.join(known)}")
    return items


@contextmanager
def work_directory(keep: Path | None, prefix: str) -> Iterator[Path]:
    """Where the processes write their logs: ``keep`` (``--workdir``, kept afterwards),
    else a temporary directory removed at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir


@dataclass(frozen=True)
class OneGroupLab:
    workdir: Path
    cluster: SentinelCluster  # a Redis primary and replica, three Sentinels
    listen: Address  # where the control plane's sidecars accept the group's clients
    cp: ControlPlane  # ready (``/readyz``)


@contextmanager
def one_group_lab(prefix: str, group: str) -> Iterator[OneGroupLab]:
    """One Sentinel-monitored ``group`` and a ready ``sentinel-xds serve`` for it, in a
    temporary directory; every process is stopped at the end, on error too."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        cluster = SentinelCluster.start(workdir, groups=(group,))
        try:
            listen = Address("127.0.0.1", free_port())
            cp = ControlPlane.for_topology(workdir, cluster.sentinel_addresses, {group: listen})
            cp.start()
            yield OneGroupLab(workdir, cluster, listen, cp)
        finally:
            stop_all()
            cluster.stop()


def utc_now() -> str:
    """When a run ended, as every result file states it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cpus() -> int | None:
    return os.cpu_count()


def loadavg() -> list[float] | None:
    """1, 5 and 15 minute load: the machine is shared, so a result says how busy it was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(note: str) -> dict[str, Any]:
    """The machine block of a result: Python, cores, load at the end, and ``note``."""
    return {
        "python": platform.python_version(),
        "cpus": cpus(),
        "loadavg_at_end": loadavg(),
        "note": note,
    }


def stats(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, p90 (nearest rank) and max of the rounds that measured something."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return {"median": None, "p90": None, "max": None}
    p90 = xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
    return {"median": round(statistics.median(xs), 1), "p90": p90, "max": xs[-1]}


def result(
    benchmark: str,
    machine_facts: Mapping[str, Any],
    summary: Mapping[str, Any],
    rounds: Sequence[Any],
    **about: str,
) -> dict[str, Any]:
    """A result document, in this key order: ``benchmark``, ``when``, ``machine``, then
    ``about`` (``setup``, ``goals``: what ran and what it should reach), ``summary`` and
    every round (dataclasses, as dicts)."""
    return {
        "benchmark": benchmark,
        "when": utc_now(),
        "machine": dict(machine_facts),
        **about,
        "summary": summary,
        "rounds": [asdict(r) for r in rounds],
    }


def write_result(out: Path, result: Mapping[str, Any], shown: object) -> None:
    """Write ``result`` to ``out`` as indented JSON, then print ``shown`` (its summary)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(shown, indent=2))
    print(f"written to {out}")
