"""The peer benchmark's definitions: what a round's numbers mean, and what the README shows.

The README table and the plots are only as honest as these derivations, so they
are checked on hand-made attempt logs whose answers are known.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.peers.haproxy import DEFAULT_CHECK, TUNED_CHECK, config_text
from bench.peers.report import README_BEGIN, README_END, markdown, rows, update_readme
from bench.peers.stats import ColumnRound, column_round, spread, summarize
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
    from bench.peers.report import plot_lost, plot_windows

    for plot, name in ((plot_windows, "w.png"), (plot_lost, "l.png")):
        plot(_results(), tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
