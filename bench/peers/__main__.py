"""``python -m bench.peers``: sentinel-xds against HAProxy and redis-py's Sentinel client.

Builds one topology (Redis primary + replica, three Sentinels with
``down-after-milliseconds 1000``, the sentinel-xds control plane with one Envoy
sidecar, HAProxy with the published role check and a tuned HAProxy), runs
``--rounds`` rounds of every scenario with one writer per column, measures the
sidecar's throughput, latency and CPU per command against Redis directly (and
against the same Envoy as a plain ``tcp_proxy``, and HAProxy), and writes the
results file, the plots and the README table. ``--throughput-only`` skips the
failover scenarios. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xds.lab import install_sigterm_handler, stop_all

from .clients import PROXY_CLIENT_SETTINGS, SENTINEL_CLIENT_SETTINGS
from .haproxy import DEFAULT_CHECK, TUNED_CHECK
from .machine import machine_info
from .report import (
    plot_lost,
    plot_throughput,
    plot_windows,
    throughput_document,
    update_readme,
)
from .scenarios import SCENARIOS, drain_available, run_round
from .stats import ColumnRound, summarize
from .tcp_proxy import TcpProxyEnvoy
from .throughput import Target, run_throughput
from .topology import COLUMNS, Topology

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "peers.json"
THROUGHPUT_RESULTS = ROOT / "bench" / "results" / "throughput.json"
SCRATCH = ROOT / "bench" / "results" / "tmp"
PLOTS = ROOT / "docs" / "bench"
README = ROOT / "README.md"
PUBLISH_MIN_ROUNDS = 10
PUBLISH_MIN_THROUGHPUT_REPS = 3
#: the columns a throughput-only run starts (the sidecar and the HAProxy it is compared with)
THROUGHPUT_COLUMNS = ("sentinel-xds", "haproxy")
MAX_FAILED_ROUNDS = 3  # per scenario, before the run is abandoned
EXIT_USAGE = 2

_started = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _started:6.0f}s] {text}", flush=True)


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"{what}: unknown {', '.join(bad) or '(empty)'}; choose from {', '.join(allowed)}"
        )
    return items


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10, help="rounds per scenario (default 10)")
    p.add_argument(
        "--scenarios",
        type=lambda v: _csv(v, list(SCENARIOS), "--scenarios"),
        default=list(SCENARIOS),
        help="comma-separated: kill,failover,drain (default all)",
    )
    p.add_argument(
        "--columns",
        type=lambda v: _csv(v, COLUMNS, "--columns"),
        default=list(COLUMNS),
        help=f"comma-separated: {','.join(COLUMNS)} (default all)",
    )
    p.add_argument(
        "--throughput-reps",
        type=int,
        default=5,
        help="redis-benchmark repetitions (0 skips the throughput part; default 5)",
    )
    p.add_argument(
        "--throughput-only",
        action="store_true",
        help="no failover scenarios: start the sidecar and HAProxy (those of --columns), "
        "measure throughput, "
        "latency and CPU per command, write bench/results/throughput.json (at least "
        f"{PUBLISH_MIN_THROUGHPUT_REPS} repetitions at full scale, else "
        "bench/results/tmp/throughput.json)",
    )
    p.add_argument(
        "--throughput-scale",
        type=float,
        default=1.0,
        help="multiply every redis-benchmark request count (runs last ~5 s each at 1; "
        "default 1; a smoke run uses e.g. 0.001)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="results file (default bench/results/peers.json for a full run of at least "
        f"{PUBLISH_MIN_ROUNDS} rounds, else bench/results/tmp/peers.json)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="do not measure: redraw plots and the README table from the results file",
    )
    p.add_argument(
        "--no-plots", action="store_true", help="write the results file only (no matplotlib)"
    )
    p.add_argument("--workdir", type=Path, help="keep process files and logs here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.throughput_reps < 0:
        parser.error(f"--throughput-reps must be 0 or more, got {args.throughput_reps}")
    if not 0 < args.throughput_scale <= 1:
        parser.error(f"--throughput-scale must be in (0, 1], got {args.throughput_scale}")
    if args.throughput_only:
        if args.throughput_reps < 1:
            parser.error("--throughput-only needs --throughput-reps of 1 or more")
        return _throughput_main(args, argv)
    full = (
        args.rounds >= PUBLISH_MIN_ROUNDS
        and set(args.scenarios) == set(SCENARIOS)
        and set(args.columns) == set(COLUMNS)
        and args.throughput_reps > 0
        and args.throughput_scale == 1
    )
    out: Path = (
        args.out or (RESULTS if full or args.report_only else SCRATCH / "peers.json")
    ).resolve()
    plots = PLOTS if out == RESULTS else out.parent
    if args.report_only:
        if not out.exists():
            print(f"--report-only: no results file {out}", file=sys.stderr)
            return EXIT_USAGE
        publish(json.loads(out.read_text()), plots, out == RESULTS, not args.no_plots)
        return 0

    def run(workdir: Path) -> None:
        results = measure(args, workdir, _command(argv))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        say(f"results written to {out}")
        publish(results, plots, out == RESULTS, not args.no_plots)

    return _guarded(args.workdir, run)


def _command(argv: Sequence[str] | None) -> str:
    return " ".join(["python -m bench.peers", *(sys.argv[1:] if argv is None else argv)])


def _guarded(keep: Path | None, body: Callable[[Path], None]) -> int:
    """Run ``body(workdir)``; stop every process whatever happens, keep the logs on failure.

    The work directory is ``keep`` if given (never removed), else a temporary one
    removed after a successful run.
    """
    install_sigterm_handler()
    workdir = keep or Path(tempfile.mkdtemp(prefix="sentinel-xds-bench-"))
    ok = False
    try:
        body(workdir)
        ok = True
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        stop_all()
        if ok and keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            say(f"process logs kept in {workdir}")
    return 0 if ok else 1


def _newest_throughput(results: dict[str, Any] | None) -> dict[str, Any] | None:
    """The newer of the published throughput-only document and ``results``' throughput part.

    ``generated_at`` strings (``YYYY-MM-DD HH:MM UTC``) sort by time.
    """
    candidates = [throughput_document(results)] if results else []
    if THROUGHPUT_RESULTS.exists():
        candidates.append(json.loads(THROUGHPUT_RESULTS.read_text()))
    present = [c for c in candidates if c]
    return max(present, key=lambda c: str(c.get("generated_at") or "")) if present else None


def publish(results: dict[str, Any], plots: Path, readme: bool, draw: bool = True) -> None:
    """Plots (unless ``draw`` is False) and, for the published results, the README table."""
    throughput = _newest_throughput(results) if readme else throughput_document(results)
    if draw:
        plots.mkdir(parents=True, exist_ok=True)
        plot_windows(results, plots / "peers-window.png")
        plot_lost(results, plots / "peers-lost.png")
        if throughput:
            plot_throughput(throughput, plots / "peers-throughput.png")
        say(f"plots written to {plots}")
    if readme:
        if update_readme(README, results, throughput):
            say(f"table updated in {README}")
        else:
            say(f"README markers not found in {README}; table not written")


def _code_version() -> dict[str, Any]:
    def git(*a: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *a], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def measure(args: argparse.Namespace, workdir: Path, command: str) -> dict[str, Any]:
    """Run every scenario, then the throughput part; returns the results document."""
    notes: list[str] = []
    scenarios = list(args.scenarios)
    if "drain" in scenarios and not drain_available():
        scenarios.remove("drain")
        notes.append(
            "`sentinel-xds drain` does not exist in this checkout: the planned sentinel-xds "
            "row used `SENTINEL FAILOVER` like the peers."
        )
        say("sentinel-xds drain not available: skipping the drain scenario")
    started_at = dt.datetime.now(dt.UTC)
    say(f"starting the topology in {workdir}")
    topo = Topology.start(workdir, args.columns)
    results: dict[str, Any] = {
        "schema": 1,
        "command": command,
        "generated_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        # the machine may be shared: a busy one explains noise (1, 5, 15 min averages)
        "load_average_start": list(os.getloadavg()),
        "code": _code_version(),
        "settings": {
            "rounds": args.rounds,
            "write_interval_ms": 10,
            "down_after_milliseconds": 1000,
            "sentinels": 3,
            "clients": {
                "proxy (sentinel-xds, haproxy, haproxy-tuned)": PROXY_CLIENT_SETTINGS,
                "redis-py-sentinel": SENTINEL_CLIENT_SETTINGS,
            },
            "haproxy": {
                DEFAULT_CHECK.name: DEFAULT_CHECK.server_options,
                TUNED_CHECK.name: TUNED_CHECK.server_options,
            },
            "notes": notes,
        },
        "scenarios": {},
    }
    try:
        records: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        failed: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        for phase, columns in _phases(args.columns):
            if phase == "sentinel-xds":
                say("starting sentinel-xds serve and the Envoy sidecar")
                topo.start_sidecar()
            for name in scenarios:
                if name == "drain" and phase != "sentinel-xds":
                    continue  # the drain is ours; the peers' planned switchover is `failover`
                done, broke = _run_rounds(topo, name, phase, columns, args.rounds)
                records[name] += done
                failed[name] += broke
                say(f"{name} ({phase}): done")
        for name in scenarios:
            if records[name]:
                results["scenarios"][name] = _scenario_result(name, records[name], failed[name])
        if args.throughput_reps:
            results["throughput"] = _throughput_part(
                topo, workdir, args.throughput_reps, args.throughput_scale
            )
    finally:
        topo.stop()
    results["load_average_end"] = list(os.getloadavg())
    results["duration_s"] = time.monotonic() - _started
    return results


def _throughput_part(topo: Topology, workdir: Path, reps: int, scale: float) -> dict[str, Any]:
    """Start the ``tcp_proxy`` Envoy in front of the primary, measure every path, stop it."""
    primary = topo.wait_healthy()
    say("starting the tcp_proxy Envoy in front of the primary")
    tcp = TcpProxyEnvoy.start(workdir, primary.address)
    try:
        targets = [Target("direct", primary.address, primary.process.pid)]
        if topo.envoy is not None:
            targets.append(Target("sidecar", topo.listen, topo.envoy.process.pid))
        targets.append(Target("envoy-tcp", tcp.listen, tcp.pid))
        if "haproxy" in topo.haproxies:
            hap = topo.haproxies["haproxy"]
            targets.append(Target("haproxy", hap.listen, hap.process.pid))
        return run_throughput(targets, reps, say, scale)
    finally:
        tcp.stop()


def _throughput_main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--throughput-only``: the sidecar and HAProxy on a fresh topology, no failovers."""
    published = args.throughput_reps >= PUBLISH_MIN_THROUGHPUT_REPS and args.throughput_scale == 1
    default = THROUGHPUT_RESULTS if published else SCRATCH / "throughput.json"
    out: Path = (args.out or default).resolve()

    def run(workdir: Path) -> None:
        started_at = dt.datetime.now(dt.UTC)
        doc: dict[str, Any] = {
            "schema": 1,
            "mode": "throughput-only",
            "command": _command(argv),
            "generated_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
            "source": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else out.name,
            "machine": machine_info(),
            # the machine may be shared: a busy one explains noise (1, 5, 15 min averages)
            "load_average_start": list(os.getloadavg()),
            "code": _code_version(),
        }
        columns = [c for c in THROUGHPUT_COLUMNS if c in args.columns]
        say(f"starting the topology in {workdir}")
        topo = Topology.start(workdir, columns)
        try:
            if "sentinel-xds" in columns:
                say("starting sentinel-xds serve and the Envoy sidecar")
                topo.start_sidecar()
            doc.update(_throughput_part(topo, workdir, args.throughput_reps, args.throughput_scale))
        finally:
            topo.stop()
        doc["load_average_end"] = list(os.getloadavg())
        doc["duration_s"] = time.monotonic() - _started
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        say(f"results written to {out}")
        if out == THROUGHPUT_RESULTS:
            _publish_throughput(doc, draw=not args.no_plots)
        elif not args.no_plots:
            plot_throughput(doc, out.parent / "peers-throughput.png")

    return _guarded(args.workdir, run)


def _publish_throughput(doc: dict[str, Any], draw: bool) -> None:
    """The throughput plot and, with the published peers results, the README block."""
    if draw:
        PLOTS.mkdir(parents=True, exist_ok=True)
        plot_throughput(doc, PLOTS / "peers-throughput.png")
        say(f"plot written to {PLOTS / 'peers-throughput.png'}")
    if not RESULTS.exists():
        say(f"no {RESULTS}: README block not written (it needs the failover results too)")
        return
    if update_readme(README, json.loads(RESULTS.read_text()), doc):
        say(f"table updated in {README}")
    else:
        say(f"README markers not found in {README}; table not written")


def _phases(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The peers together first (control plane not running), then sentinel-xds alone."""
    peers = [c for c in COLUMNS if c in columns and c != "sentinel-xds"]
    phases = [("peers", peers)] if peers else []
    if "sentinel-xds" in columns:
        phases.append(("sentinel-xds", ["sentinel-xds"]))
    return phases


def _run_rounds(
    topo: Topology, name: str, phase: str, columns: list[str], rounds: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rounds`` good rounds (a broken round is recorded and run again, up to a limit)."""
    scenario = SCENARIOS[name]
    records: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    while len(records) < rounds:
        n = len(records) + len(failed) + 1
        try:
            record = run_round(topo, scenario, n, columns, say)
        except (RuntimeError, TimeoutError, OSError) as exc:
            say(f"{name} ({phase}) #{n} failed: {exc}")
            failed.append({"phase": phase, "round": n, "error": str(exc)[:1000]})
            if len(failed) > MAX_FAILED_ROUNDS:
                raise RuntimeError(f"{name}: {len(failed)} rounds failed; giving up") from exc
            continue
        record["phase"] = phase
        records.append(record)
    return records, failed


def _scenario_result(
    name: str, records: list[dict[str, Any]], failed: list[dict[str, Any]]
) -> dict[str, Any]:
    columns = [c for c in COLUMNS if any(c in r["columns"] for r in records)]
    summary = {
        c: summarize([ColumnRound.from_json(r["columns"][c]) for r in records if c in r["columns"]])
        for c in columns
    }
    scenario = SCENARIOS[name]
    return {
        "description": scenario.description,
        "planned": scenario.planned,
        "rounds": records,
        "failed_rounds": failed,
        "summary": summary,
    }


if __name__ == "__main__":
    sys.exit(main())
