"""The README's throughput part and its plot, from a throughput document alone.

A throughput document is what :func:`bench.peers.throughput.run_throughput`
returns plus when and on what it ran: ``bench/results/throughput.json`` from
``python -m bench.peers --throughput-only``, or the ``throughput`` part of
``bench/results/peers.json`` (whichever is newer is shown). Documents from before
the ``envoy-tcp`` target, the one-client workload and the CPU columns (keys
``P1``/``P16``) are still read; what they lack shows as ``n/a``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["THROUGHPUT_LABELS", "plot_throughput", "throughput_markdown"]

THROUGHPUT_LABELS = {
    "direct": "Redis directly",
    "sidecar": "Envoy sidecar (redis_proxy)",
    "envoy-tcp": "same Envoy, tcp_proxy",
    "haproxy": "HAProxy role check",
}
TESTS = ("SET", "GET")
#: keys of documents written before the workloads had names
_OLD_WORKLOADS = {"c50-P1": "P1", "c50-P16": "P16"}


def _cell(summary: dict[str, Any], name: str, workload: str, test: str) -> dict[str, Any]:
    by_workload = summary.get(name, {})
    got = by_workload.get(workload) or by_workload.get(_OLD_WORKLOADS.get(workload, ""), {})
    return dict(got.get(test, {}))


def _ratio(cell: dict[str, Any]) -> str:
    r = cell.get("ratio_to_direct")
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]" if r else "n/a"


def _median(cell: dict[str, Any], key: str, fmt: str = "{:.1f}") -> str:
    s = cell.get(key)
    return fmt.format(s["median"]) if s else "n/a"


def _us(cell: dict[str, Any], key: str) -> str:
    """A latency median in µs from a spread, or n/a."""
    return _median(cell, key, "{:.0f}")


def _targets(summary: dict[str, Any]) -> list[str]:
    known = [t for t in THROUGHPUT_LABELS if t in summary]
    return known + [t for t in summary if t not in known]


def _throughput_rows(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| through | SET, ratio to direct: median [min-max] | GET | SET, `-P 16` | GET, `-P 16` |",
        "| --- | --- | --- | --- | --- |",
    ]
    direct = [
        f"{_cell(summary, 'direct', w, t).get('rps', {}).get('median', 0):,.0f} req/s"
        for w in ("c50-P1", "c50-P16")
        for t in ("SET", "GET")
    ]
    lines.append(f"| {THROUGHPUT_LABELS['direct']} | " + " | ".join(direct) + " |")
    for name in _targets(summary):
        if name == "direct":
            continue
        cells = [_ratio(_cell(summary, name, w, t)) for w in ("c50-P1", "c50-P16") for t in TESTS]
        lines.append(f"| {THROUGHPUT_LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def _latency_cpu_rows(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| through | one client, GET: latency added, µs p50 / p99 | SET: p50 / p99 | "
        "CPU per GET, µs: 50 clients | 50 clients, `-P 16` | one client |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in _targets(summary):
        latency = []
        for test in ("GET", "SET"):
            c = _cell(summary, name, "c1-P1", test)
            if name == "direct":
                # the reference: its own latency, not an addition
                latency.append(
                    f"({c['p50_ms_median'] * 1000:.0f} / {c['p99_ms_median'] * 1000:.0f} itself)"
                    if "p50_ms_median" in c
                    else "n/a"
                )
            else:
                latency.append(f"+{_us(c, 'added_p50_us')} / +{_us(c, 'added_p99_us')}")
        cpu = [
            _median(_cell(summary, name, w, "GET"), "cpu_us_per_command", "{:.2f}")
            for w in ("c50-P1", "c50-P16", "c1-P1")
        ]
        label = THROUGHPUT_LABELS.get(name, name)
        if name == "direct":
            label = "Redis directly (its own CPU)"
        lines.append(f"| {label} | " + " | ".join(latency + cpu) + " |")
    return lines


def _busy(summary: dict[str, Any], name: str, workload: str) -> float | None:
    """Share of one core the target's process used: CPU per command x commands per second."""
    cell = _cell(summary, name, workload, "GET")
    if not cell.get("cpu_us_per_command") or not cell.get("rps"):
        return None
    return float(cell["cpu_us_per_command"]["median"] * cell["rps"]["median"] / 1e6)


def _explanation(summary: dict[str, Any]) -> list[str]:
    """The pipelined gap in words, every number taken from the document."""
    needed = ("sidecar", "envoy-tcp", "haproxy", "direct")
    if not all(_cell(summary, n, "c50-P16", "GET").get("cpu_us_per_command") for n in needed):
        return []

    def ratio(name: str) -> str:
        return f"{_cell(summary, name, 'c50-P16', 'GET')['ratio_to_direct']['median']:.2f}"

    def cpu(name: str, workload: str = "c50-P16") -> str:
        return _median(_cell(summary, name, workload, "GET"), "cpu_us_per_command", "{:.2f}")

    busy = _busy(summary, "sidecar", "c50-P16")
    busy_text = (
        f" (its process busy {busy:.0%} of a core, with one worker thread)"
        if busy is not None
        else ""
    )
    return [
        "",
        "The pipelined gap is the price of per-command parsing. With `-P 16` the same "
        f"Envoy with `tcp_proxy` reaches {ratio('envoy-tcp')} of direct GET throughput "
        f"(HAProxy {ratio('haproxy')}), the sidecar {ratio('sidecar')}: `redis_proxy` "
        "decodes every command, routes it by key and encodes every reply, and spends "
        f"{cpu('sidecar')} µs of CPU per GET{busy_text}, against "
        f"{cpu('envoy-tcp')} µs for `tcp_proxy`, {cpu('haproxy')} µs for HAProxy and "
        f"{cpu('direct')} µs for Redis itself. At one client the sidecar "
        f"adds {_us(_cell(summary, 'sidecar', 'c1-P1', 'GET'), 'added_p50_us')} µs at p50 and "
        f"{_us(_cell(summary, 'sidecar', 'c1-P1', 'GET'), 'added_p99_us')} µs at p99 to a GET "
        f"(HAProxy {_us(_cell(summary, 'haproxy', 'c1-P1', 'GET'), 'added_p50_us')} / "
        f"{_us(_cell(summary, 'haproxy', 'c1-P1', 'GET'), 'added_p99_us')}). This is with "
        "redis_proxy's per-command latency histograms already dropped by the sidecar "
        "bootstrap's `stats_matcher` (`xds/resources/bootstrap.py`) and no buffer flush "
        "timeout set (`xds/resources/redis_group.py`).",
        *_unpipelined(summary),
    ]


def _unpipelined(summary: dict[str, Any]) -> list[str]:
    """Why the sidecar can beat a TCP proxy without pipelining (only when it did)."""
    sidecar = _cell(summary, "sidecar", "c50-P1", "GET")
    tcp = _cell(summary, "envoy-tcp", "c50-P1", "GET")
    if not (sidecar.get("ratio_to_direct") and tcp.get("ratio_to_direct")):
        return []
    if sidecar["ratio_to_direct"]["median"] <= tcp["ratio_to_direct"]["median"]:
        return []
    return [
        "",
        "Without pipelining the order turns: the sidecar reaches "
        f"{sidecar['ratio_to_direct']['median']:.2f} of direct GET throughput with 50 clients, "
        f"`tcp_proxy` {tcp['ratio_to_direct']['median']:.2f}, and the sidecar spends "
        f"{_median(sidecar, 'cpu_us_per_command', '{:.2f}')} µs of CPU per GET against "
        f"{_median(tcp, 'cpu_us_per_command', '{:.2f}')}. `redis_proxy` carries all 50 "
        "clients' commands to Redis on one upstream connection (Envoy's stats during a run: "
        "50 downstream, 1 upstream), which batches them; a TCP proxy keeps one upstream "
        "connection per client (the likely reason; not measured further).",
    ]


def throughput_markdown(doc: dict[str, Any]) -> list[str]:
    """README lines for one throughput document (``generated_at`` etc. optional)."""
    summary = doc["summary"]
    when = doc.get("generated_at", "date not recorded")
    load = doc.get("load_average_start")
    load_text = f", load average {load[0]:.2f} at start" if load else ""
    during = [r["load_average_1m"] for r in doc.get("runs", []) if "load_average_1m" in r]
    if during:
        load_text += f" and {min(during):.2f}-{max(during):.2f} after each workload"
    workloads = doc.get("settings", {}).get("workloads")
    shape = "runs of ~5 s or more each" if workloads else "`redis-benchmark -c 50`, short runs"
    source = doc.get("source", "bench/results/peers.json")
    return [
        f"Throughput, latency and CPU per command (`redis-benchmark`, {when}, "
        f"{doc['reps']} interleaved repetitions, {shape}{load_text}; `{source}`). "
        "Throughput with 50 clients, as a ratio to Redis directly in the same repetition:",
        "",
        *_throughput_rows(summary),
        "",
        "Latency a proxy adds to one client's requests (over direct, same repetition; "
        "medians) and CPU its process spends per command (all threads, from "
        "`/proc/<pid>/stat`):",
        "",
        *_latency_cpu_rows(summary),
        *_explanation(summary),
    ]


# --- plot -----------------------------------------------------------------------


def plot_throughput(doc: dict[str, Any], path: Path) -> None:
    """Grouped bars: requests/s relative to direct Redis, per command and pipeline depth."""
    from .report import _pyplot  # noqa: PLC0415 - one matplotlib setup for every plot

    plt = _pyplot()
    summary = doc["summary"]
    targets = [t for t in _targets(summary) if t != "direct"]
    groups: Sequence[tuple[str, str]] = [
        (w, t) for w in ("c50-P1", "c50-P16") for t in ("SET", "GET")
    ]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(targets)
    for j, target in enumerate(targets):
        ratios = [_cell(summary, target, w, t).get("ratio_to_direct") for w, t in groups]
        present = [(i, r) for i, r in enumerate(ratios) if r]
        medians = [r["median"] for _, r in present]
        lows = [r["median"] - r["min"] for _, r in present]
        highs = [r["max"] - r["median"] for _, r in present]
        xs = [i + (j - (len(targets) - 1) / 2) * width for i, _ in present]
        label = THROUGHPUT_LABELS.get(target, target)
        ax.bar(xs, medians, width=width, label=label, color=f"C{j}", zorder=3)
        ax.errorbar(xs, medians, yerr=[lows, highs], fmt="none", color="black", capsize=3, zorder=4)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), [f"{t}, -P {w.split('-P')[1]}" for w, t in groups])
    ax.set_ylabel("requests/s relative to direct Redis")
    ax.set_title(f"redis-benchmark -c 50 ({doc['reps']} reps; median, min-max)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
