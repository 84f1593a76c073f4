"""A one-round smoke run of the peer benchmark (``python -m bench.peers``) on real processes.

The benchmark is run on demand, not in CI; this keeps its harness honest between
runs: one planned failover (``SENTINEL FAILOVER``) with the sentinel-xds column
only, and the lost-write counter checked against a real Redis.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.peers.__main__ import main
from bench.peers.scenarios import _missing
from xds.lab import RedisNode

pytestmark = pytest.mark.integration


def test_lost_write_counter_counts_only_keys_absent_from_the_primary(tmp_path: Path) -> None:
    """Keys that exist are not lost; each absent key is counted once."""
    node = RedisNode.start(tmp_path)
    try:
        with node.client() as c:
            for i in range(1500):  # more than one pipeline chunk
                c.set(f"k:{i}", i)
        keys = [f"k:{i}" for i in range(1500)] + ["absent:1", "absent:2"]
        assert _missing(node, keys) == 2
    finally:
        node.stop()


def test_one_round_measures_a_real_failover_through_the_sidecar(tmp_path: Path) -> None:
    """The harness sees the promotion, the new primary, and the writer's outcome."""
    out = tmp_path / "peers.json"
    argv = ["--rounds", "1", "--scenarios", "failover", "--columns", "sentinel-xds"]
    argv += ["--throughput-reps", "0", "--no-plots", "--out", str(out)]
    argv += ["--workdir", str(tmp_path / "run")]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["machine"]["versions"]["redis"].startswith("7.")
    scenario = results["scenarios"]["failover"]
    assert scenario["failed_rounds"] == []
    (record,) = scenario["rounds"]
    assert record["final_primary"] == record["new_primary"] != record["old_primary"]
    # the replica reported master before the Sentinels agreed (give or take one poll
    # of the 5 ms watcher on a busy machine), and the old primary rejoined after
    assert 0 < record["promoted_after_s"] < record["sentinels_switched_after_s"] + 0.1
    assert record["rejoined_after_s"] >= record["sentinels_switched_after_s"]
    assert record["recovered"] == {"sentinel-xds": True}
    column = record["columns"]["sentinel-xds"]
    assert column["acked"] >= 50
    assert 0 <= column["lost"] < column["acked"]
    assert 0.005 < column["window_s"] < 30
    assert column["connections"] >= 1
    assert scenario["summary"]["sentinel-xds"]["rounds"] == 1


def test_throughput_only_measures_direct_the_sidecar_and_envoy_tcp_proxy(tmp_path: Path) -> None:
    """``--throughput-only`` runs no failover and measures every path through real processes.

    A tiny request count (``--throughput-scale``): this checks the harness, not the numbers.
    """
    out = tmp_path / "throughput.json"
    argv = ["--throughput-only", "--columns", "sentinel-xds", "--throughput-reps", "1"]
    argv += ["--throughput-scale", "0.002", "--no-plots", "--out", str(out)]
    argv += ["--workdir", str(tmp_path / "run")]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "throughput-only"
    assert "scenarios" not in doc
    assert len(doc["load_average_start"]) == 3
    assert {r["workload"] for r in doc["runs"]} == {"c50-P1", "c50-P16", "c1-P1"}
    summary = doc["summary"]
    assert list(summary) == ["direct", "sidecar", "envoy-tcp"]
    for name, by_workload in summary.items():
        for workload, by_test in by_workload.items():
            for test, cell in by_test.items():
                where = f"{name} {workload} {test}"
                assert cell["rps"]["median"] > 0, where
                assert cell["cpu_us_per_command"]["min"] >= 0, where
                assert cell["p50_ms_median"] > 0, where
    assert summary["direct"]["c1-P1"]["GET"]["added_p50_us"]["median"] == 0
