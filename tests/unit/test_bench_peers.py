"""The peer benchmark's definitions: what a round's numbers mean, and what the README shows.

The README table and the plots are only as honest as these derivations, so they
are checked on hand-made attempt logs whose answers are known.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.peers.haproxy import DEFAULT_CHECK, TUNED_CHECK, config_text
from bench.peers.report import README_BEGIN, README_END, markdown, rows, update_readme
from bench.peers.stats import ColumnRound, column_round, spread, summarize
from bench.peers.tcp_proxy import tcp_proxy_bootstrap
from bench.peers.throughput import Target, cpu_seconds, parse_csv, run_throughput, summarize_runs
from bench.peers.throughput_report import throughput_markdown
from bench.peers.writer import Attempt
from redis_sentinel_watch import Address


def attempts(spec: list[tuple[float, str | None]]) -> list[Attempt]:
    """``(end time, error)`` pairs → attempts that took 1 ms each."""
    return [Attempt(f"k:{i}", t - 0.001, t, e) for i, (t, e) in enumerate(spec)]


def test_window_is_the_longest_gap_between_acknowledged_writes() -> None:
    """Errors and a hang both count: the window runs from the last OK to the next OK."""
    log = attempts(
        [(0.00, None), (0.01, None), (0.02, "ResponseError: upstream failure")]
        + [(0.03 + i * 0.01, "ResponseError: upstream failure") for i in range(10)]
        + [(2.50, None), (2.51, None)]
    )
    r = column_round(log, trigger_at=0.015, lost=0, connections=1)
    assert r.window_s == pytest.approx(2.49)
    assert r.errors == 11
    assert r.error_span_s == pytest.approx(2.48)
    assert r.first_error_after_s == pytest.approx(0.005)
    assert r.recovered_after_s == pytest.approx(2.485)
    assert r.error_kinds == {"ResponseError: upstream failure": 11}
    assert not r.reconnected


def test_a_client_that_blocks_in_retries_has_a_window_but_no_error_span() -> None:
    """redis-py retrying inside one call shows no error, yet the application waited."""
    log = attempts([(0.0, None), (0.01, None), (1.8, None), (1.81, None)])
    r = column_round(log, trigger_at=0.005, lost=3, connections=2)
    assert r.window_s == pytest.approx(1.79)
    assert r.error_span_s is None
    assert r.errors == 0
    assert r.lost == 3
    assert r.reconnected


def test_error_kinds_drop_addresses_so_equal_errors_are_counted_together() -> None:
    """Two refusals from different ports are one kind of error."""
    log = attempts(
        [
            (0.0, "ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused."),
            (0.1, "ConnectionError: Error 111 connecting to 127.0.0.1:7000. Connection refused."),
            (0.2, None),
        ]
    )
    r = column_round(log, trigger_at=0.0, lost=0, connections=1)
    assert r.error_kinds == {"ConnectionError: Error 111 connecting to": 2}


def test_spread_reports_median_quartiles_and_extremes() -> None:
    """The noise shown next to every number: IQR by the inclusive method, min and max."""
    s = spread([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0, "n": 5}
    assert spread([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0, "min": 7.0, "max": 7.0, "n": 1}
    assert spread([]) is None


def test_column_round_survives_the_results_file() -> None:
    """--report-only rebuilds summaries from JSON: the round trip must be lossless."""
    r = column_round(attempts([(0.0, None), (0.5, "X: y"), (1.0, None)]), 0.1, 2, 3)
    assert ColumnRound.from_json(r.to_json()) == r


def _results() -> dict[str, Any]:
    def column(window: float, lost: int, connections: int) -> dict[str, Any]:
        return ColumnRound(window, None, 0, 100, lost, connections, None, None, {}).to_json()

    def scenario(cols: dict[str, tuple[float, int, int]]) -> dict[str, Any]:
        rounds = [{"round": 1, "columns": {c: column(*v) for c, v in cols.items()}}]
        summary = {
            c: summarize([ColumnRound.from_json(r["columns"][c]) for r in rounds]) for c in cols
        }
        return {"rounds": rounds, "summary": summary}

    return {
        "generated_at": "2026-01-01 00:00 UTC",
        "duration_s": 600,
        "machine": {
            "cpu_model": "CPU",
            "cores": 2,
            "kernel": "6",
            "versions": {
                "redis": "7",
                "envoy": "1.40",
                "haproxy": "2.6",
                "python": "3.11",
                "redis-py": "8",
            },
        },
        "settings": {"rounds": 1, "notes": ["a note"]},
        "scenarios": {
            "kill": scenario({"sentinel-xds": (2.3, 0, 1), "haproxy": (3.0, 900, 4)}),
            "failover": scenario({"sentinel-xds": (0.02, 0, 1), "haproxy": (0.05, 1000, 3)}),
            "drain": scenario({"sentinel-xds": (0.2, 0, 1)}),
        },
    }


def test_planned_table_puts_the_drain_first_then_every_column_under_sentinel_failover() -> None:
    """Our planned switchover is compared with the peers' one, and ours under theirs too."""
    labels = [r.label for r in rows(_results(), planned=True)]
    assert labels == [
        "sentinel-xds + Envoy, sentinel-xds drain",
        "sentinel-xds + Envoy, SENTINEL FAILOVER",
        "HAProxy role check, SENTINEL FAILOVER",
    ]
    assert [r.column for r in rows(_results(), planned=False)] == ["sentinel-xds", "haproxy"]


def test_markdown_shows_window_in_ms_losses_and_reconnects() -> None:
    """The README line for HAProxy under kill -9 carries its numbers from the results."""
    text = markdown(_results())
    line = next(ln for ln in text.splitlines() if ln.startswith("| HAProxy role check |"))
    assert "3000 (3000-3000) [3000-3000]" in line
    assert "900 [900-900]" in line
    assert line.endswith("| 1/1 | 1/1 |")
    assert "- a note" in text


def test_update_readme_replaces_only_the_generated_block(tmp_path: Path) -> None:
    """Hand-written text around the markers is kept; without markers nothing is written."""
    readme = tmp_path / "README.md"
    readme.write_text(f"# T\n\nintro\n{README_BEGIN}\nold table\n{README_END}\n\nafter\n")
    assert update_readme(readme, _results())
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("# T\n\nintro\n")
    assert text.endswith(f"{README_END}\n\nafter\n")
    assert "| sentinel-xds + Envoy |" in text
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not update_readme(plain, _results())
    assert plain.read_text() == "no markers\n"


def test_haproxy_configs_carry_the_published_check_and_the_tuned_options() -> None:
    """The comparison is only fair if HAProxy runs exactly the published role check."""
    servers = [Address("127.0.0.1", 7001), Address("127.0.0.1", 7002)]
    listen, stats = Address("127.0.0.1", 7000), Address("127.0.0.1", 7003)
    published = config_text(listen, stats, servers, DEFAULT_CHECK)
    for line in (
        "option tcp-check",
        "tcp-check send info\\ replication\\r\\n",
        "tcp-check expect string role:master",
        "server redis1 127.0.0.1:7001 check inter 1s",
        "server redis2 127.0.0.1:7002 check inter 1s",
    ):
        assert line in published
    tuned = config_text(listen, stats, servers, TUNED_CHECK)
    assert (
        "server redis1 127.0.0.1:7001 check inter 100ms fall 1 rise 1 "
        "on-marked-down shutdown-sessions" in tuned
    )


def test_plots_are_drawn_from_the_results_alone(tmp_path: Path) -> None:
    """Each plot is a PNG made from the results document (matplotlib: the bench extra)."""
    pytest.importorskip("matplotlib")
    from bench.peers.report import plot_lost, plot_throughput, plot_windows

    for plot, name in ((plot_windows, "w.png"), (plot_lost, "l.png")):
        plot(_results(), tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_throughput(_throughput_doc(), tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- throughput, latency and CPU per command ------------------------------------------


def _bench(rps: float, p50_ms: float, p99_ms: float, cpu_us: float) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50_ms, "p99_ms": p99_ms, "cpu_us_per_command": cpu_us}


def _throughput_runs() -> list[dict[str, Any]]:
    """Two repetitions; every target is 1/2 (sidecar), 3/4 (tcp_proxy) of direct, etc."""
    runs = []
    for rep, scale in ((1, 1.0), (2, 2.0)):
        for workload in ("c50-P1", "c50-P16", "c1-P1"):
            results = {
                "direct": {t: _bench(1000 * scale, 0.030, 0.100, 1.0) for t in ("SET", "GET")},
                "sidecar": {t: _bench(500 * scale, 0.070, 0.160, 4.5) for t in ("SET", "GET")},
                "envoy-tcp": {t: _bench(750 * scale, 0.050, 0.130, 1.5) for t in ("SET", "GET")},
                "haproxy": {t: _bench(800 * scale, 0.054, 0.135, 0.8) for t in ("SET", "GET")},
            }
            runs.append(
                {"rep": rep, "workload": workload, "load_average_1m": rep, "results": results}
            )
    return runs


def test_throughput_is_paired_with_direct_in_the_same_repetition() -> None:
    """Ratios and added latency compare runs of one repetition, never across repetitions."""
    summary = summarize_runs(_throughput_runs())
    sidecar = summary["sidecar"]["c50-P16"]["GET"]
    # direct doubled in rep 2, and so did the sidecar: the ratio stays 0.5 in both
    assert sidecar["ratio_to_direct"]["min"] == sidecar["ratio_to_direct"]["max"] == 0.5
    assert sidecar["rps"]["median"] == 750
    assert sidecar["added_p50_us"]["median"] == pytest.approx(40)
    assert sidecar["added_p99_us"]["median"] == pytest.approx(60)
    assert sidecar["cpu_us_per_command"]["median"] == 4.5
    assert summary["envoy-tcp"]["c50-P16"]["SET"]["ratio_to_direct"]["median"] == 0.75
    assert list(summary) == ["direct", "sidecar", "envoy-tcp", "haproxy"]


def test_cpu_seconds_reads_user_and_system_time_after_the_command_name(tmp_path: Path) -> None:
    """A command name with spaces and parentheses must not shift the fields."""
    (tmp_path / "42").mkdir()
    fields = ["S"] + ["0"] * 10 + ["250", "150"] + ["0"] * 30  # utime, stime: fields 14, 15
    (tmp_path / "42" / "stat").write_text(f"42 (envoy (main) x) {' '.join(fields)}\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert cpu_seconds(42, proc=tmp_path) == pytest.approx(400 / ticks)


def test_cpu_seconds_of_this_process_grows_with_work() -> None:
    """The real /proc: burning CPU shows up (all threads of the process count)."""
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) > before


def test_parse_csv_picks_the_row_of_the_test() -> None:
    """redis-benchmark 7.0's CSV: rps and latencies in ms with 1 µs resolution."""
    text = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
        '"p99_latency_ms","max_latency_ms"\n'
        '"GET","31123.56","0.028","0.016","0.031","0.047","0.111","5.831"\n'
    )
    assert parse_csv(text, "GET") == {"rps": 31123.56, "p50_ms": 0.031, "p99_ms": 0.111}
    with pytest.raises(RuntimeError, match="no SET row"):
        parse_csv(text, "SET")


def test_run_throughput_needs_direct_as_the_reference() -> None:
    """Without Redis directly there is nothing to state ratios against."""
    target = Target("sidecar", Address("127.0.0.1", 7000), os.getpid())
    with pytest.raises(ValueError, match="must include 'direct'"):
        run_throughput([target], 1, print)


def _throughput_doc() -> dict[str, Any]:
    return {
        "generated_at": "2026-12-01 15:00 UTC",
        "load_average_start": [0.42, 1.0, 1.5],
        "source": "bench/results/throughput.json",
        "settings": {"workloads": {"c50-P1": {}}},
        "reps": 2,
        "runs": _throughput_runs(),
        "summary": summarize_runs(_throughput_runs()),
    }


def test_throughput_markdown_states_ratios_latency_cpu_and_the_pipelined_gap() -> None:
    """Every number in the README's throughput part comes from the document."""
    text = "\n".join(throughput_markdown(_throughput_doc()))
    assert "2026-12-01 15:00 UTC, 2 interleaved repetitions" in text
    assert "load average 0.42 at start and 1.00-2.00 after each workload" in text
    tcp = next(ln for ln in text.splitlines() if ln.startswith("| same Envoy, tcp_proxy |"))
    assert tcp.count("0.75 [0.75-0.75]") == 4
    sidecar = [ln for ln in text.splitlines() if ln.startswith("| Envoy sidecar")]
    assert sidecar[1].startswith("| Envoy sidecar (redis_proxy) | +40 / +60 | +40 / +60 | 4.50 |")
    assert "`tcp_proxy` reaches 0.75 of direct" in text
    assert "spends 4.50 µs of CPU per GET" in text
    assert "0.80 µs for HAProxy" in text
    assert "(HAProxy 24 / 35)" in text


def test_the_unpipelined_order_is_explained_only_when_the_sidecar_is_ahead() -> None:
    """The one-upstream-connection sentence appears only if the numbers show it."""
    doc = _throughput_doc()
    assert "order turns" not in "\n".join(throughput_markdown(doc))
    cell = doc["summary"]["sidecar"]["c50-P1"]["GET"]
    cell["ratio_to_direct"] = spread([0.9])
    text = "\n".join(throughput_markdown(doc))
    assert "the sidecar reaches 0.90 of direct GET throughput with 50 clients" in text
    assert "`tcp_proxy` 0.75" in text


def test_throughput_markdown_reads_a_document_from_before_the_new_columns() -> None:
    """peers.json from before tcp_proxy, one-client latency and CPU: n/a, no explanation."""
    old = {
        "reps": 5,
        "summary": {
            name: {
                depth: {
                    test: {"rps": spread([rps]), "ratio_to_direct": spread([rps / 1000])}
                    for test in ("SET", "GET")
                }
                for depth in ("P1", "P16")
            }
            for name, rps in (("direct", 1000.0), ("sidecar", 400.0))
        },
    }
    text = "\n".join(throughput_markdown(old))
    assert "| Envoy sidecar (redis_proxy) | 0.40 [0.40-0.40] |" in text
    assert "| Redis directly | 1,000 req/s |" in text
    assert "n/a" in text
    assert "pipelined gap" not in text


def test_a_throughput_only_document_replaces_the_peers_throughput_in_the_readme() -> None:
    """The newer throughput run is shown with the failover tables of the peers run."""
    results = {**_results(), "throughput": {"reps": 9, "summary": _throughput_doc()["summary"]}}
    assert "9 interleaved repetitions" in markdown(results)
    text = markdown(results, _throughput_doc())
    assert "2 interleaved repetitions" in text
    assert "9 interleaved" not in text
    assert "| HAProxy role check |" in text  # the failover tables stay


def test_tcp_proxy_bootstrap_is_a_static_tcp_proxy_to_the_primary() -> None:
    """The baseline is the same Envoy copying bytes: one tcp_proxy listener, one endpoint."""
    listen, admin = Address("127.0.0.1", 7000), Address("127.0.0.1", 7001)
    doc = yaml.safe_load(tcp_proxy_bootstrap(listen, admin, Address("127.0.0.1", 6379)))
    assert "dynamic_resources" not in doc
    (listener,) = doc["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 7000}
    ((flt,),) = [chain["filters"] for chain in listener["filter_chains"]]
    assert flt["typed_config"]["@type"].endswith("tcp_proxy.v3.TcpProxy")
    (cluster,) = doc["static_resources"]["clusters"]
    assert flt["typed_config"]["cluster"] == cluster["name"]
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (lb,) = endpoints["lb_endpoints"]
    assert lb["endpoint"]["address"]["socket_address"]["port_value"] == 6379
