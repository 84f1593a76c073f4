"""``sentinel-xds status`` / ``events`` rendering and exit codes, from /status JSON as served
(read through :class:`StatusDocument`, as the command does)."""

from __future__ import annotations

import copy
from typing import Any

from xds.ops.status_view import (
    EXIT_OK,
    EXIT_PROBLEMS,
    problems,
    render_events,
    render_status,
    status_exit_code,
    table,
)
from xds.service.admin_documents import EventsDocument, StatusDocument


def synced(version: str) -> dict[str, Any]:
    return {
        "state": "SYNCED",
        "sent": version,
        "acked": version,
        "nacked": "",
        "nack_detail": "",
        "nacks": 0,
    }


HEALTHY: dict[str, Any] = {
    "ready": True,
    "reason": "ok",
    "versions": {"Cluster": "c1", "ClusterLoadAssignment": "e1", "Listener": "l1"},
    "sentinels": [
        {"address": "127.0.0.1:26379", "reachable": True, "tilt": False, "error": None},
        {"address": "127.0.0.1:26380", "reachable": True, "tilt": False, "error": None},
        {"address": "127.0.0.1:26381", "reachable": True, "tilt": False, "error": None},
    ],
    "groups": [
        {
            "name": "mymaster",
            "primary": "127.0.0.1:6380",
            "replicas": ["127.0.0.1:6379", "127.0.0.1:6381"],
            "drained": ["127.0.0.1:6379"],
            "config_epoch": 1,
            "agreeing": 3,
            "sentinels": 3,
            "health": "ok",
            "degraded": False,
            "provisional": False,
            "reason": "",
        }
    ],
    "sidecars": [
        {
            "stream_id": 1,
            "node_id": "registry-1",
            "cluster": "docker-registry",
            "envoy_version": "envoy/1.40.0",
            "peer": "ipv4:127.0.0.1:48448",
            "protocol": "sotw",
            "connected_since": "2026-11-27T23:45:31Z",
            "types": {
                "Cluster": synced("c1"),
                "ClusterLoadAssignment": synced("e1"),
                "Listener": synced("l1"),
            },
            "primaries": {"mymaster": "127.0.0.1:6380"},
        }
    ],
    "failovers": [],
}


def doc(status: dict[str, Any]) -> StatusDocument:
    return StatusDocument.from_json(status)


def with_sidecar_type(type_name: str, **state: Any) -> dict[str, Any]:
    status = copy.deepcopy(HEALTHY)
    status["sidecars"][0]["types"][type_name].update(state)
    return status


def test_table_aligns_columns_without_trailing_blanks() -> None:
    """Columns line up under their headers; no line ends in spaces."""
    text = table(["A", "LONG HEADER"], [["xxxxx", "1"], ["y", ""]])
    lines = text.splitlines()
    assert lines[0] == "A      LONG HEADER"
    assert lines[1] == "xxxxx  1"
    assert lines[2] == "y"


def test_healthy_status_renders_every_section_and_exits_zero() -> None:
    """Group, Sentinels and the sidecar line (like istioctl proxy-status); exit 0."""
    text = render_status(doc(HEALTHY), "http://127.0.0.1:9102")
    assert "control plane http://127.0.0.1:9102: ready" in text
    assert "127.0.0.1:6379 (drained)" in text
    assert "3/3 agree" in text
    sidecar_line = next(line for line in text.splitlines() if line.startswith("registry-1"))
    assert sidecar_line.split() == [
        "registry-1",
        "docker-registry",
        "127.0.0.1:48448",  # the gRPC peer without its ipv4: prefix
        "2026-11-27T23:45:31Z",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        "mymaster=127.0.0.1:6380",
    ]
    assert text.endswith("no problems")
    assert problems(doc(HEALTHY)) == []
    assert status_exit_code([doc(HEALTHY)]) == EXIT_OK


def test_nacked_resource_is_shown_with_envoys_error_and_exits_one() -> None:
    """A NACK names the sidecar, the type, the rejected version and Envoy's error text."""
    status = with_sidecar_type(
        "Listener",
        state="NACKED",
        nacked="l2",
        nack_detail="Error adding/updating listener(s) redis/mymaster: cannot bind "
        "'127.0.0.1:6379': Address already in use\n",
    )
    found = problems(doc(status))
    assert found == [
        "sidecar registry-1 NACKED Listener version l2: Error adding/updating listener(s) "
        "redis/mymaster: cannot bind '127.0.0.1:6379': Address already in use"
    ]
    text = render_status(doc(status))
    assert "NACKED" in text.splitlines()[-1]
    assert "1 problem:" in text
    assert status_exit_code([doc(status)]) == EXIT_PROBLEMS


def test_stale_sidecar_exits_one() -> None:
    """A sidecar that has not ACKed the latest version is STALE, and that is a problem."""
    status = with_sidecar_type("Cluster", state="STALE", sent="c2", acked="c1")
    assert problems(doc(status)) == ["sidecar registry-1 STALE on Cluster: sent c2, ACKed c1"]
    assert status_exit_code([doc(status)]) == EXIT_PROBLEMS


def test_degraded_group_unreachable_sentinel_and_not_ready_are_problems() -> None:
    """Each kind of trouble yields its own line naming what and why."""
    status = copy.deepcopy(HEALTHY)
    status["ready"], status["reason"] = False, "only 1 of 3 Sentinels reachable"
    status["groups"][0].update(
        health="degraded", degraded=True, agreeing=1, reason="no majority for any primary"
    )
    status["sentinels"][1].update(reachable=False, error="timed out")
    status["sentinels"][2].update(tilt=True)
    assert problems(doc(status)) == [
        "control plane not ready: only 1 of 3 Sentinels reachable",
        "group mymaster degraded: no majority for any primary (1/3 Sentinels agree)",
        "sentinel 127.0.0.1:26380 unreachable: timed out",
        "sentinel 127.0.0.1:26381 in TILT mode (its vote is ignored)",
    ]
    text = render_status(doc(status))
    assert "NOT READY" in text and "DOWN: timed out" in text and "up (TILT)" in text


def test_group_without_a_promotable_replica_is_a_problem() -> None:
    """No replica left, or only drained ones: the next primary failure cannot be failed over."""
    status = copy.deepcopy(HEALTHY)
    status["groups"][0]["replicas"] = ["127.0.0.1:6379"]
    assert problems(doc(status)) == [
        "group mymaster has no promotable replica: if its primary 127.0.0.1:6380 fails, "
        "Sentinel cannot fail over"
    ]
    status["groups"][0]["replicas"] = []
    assert len(problems(doc(status))) == 1
    assert "REPLICAS" in render_status(doc(status))


def test_unreachable_control_plane_exits_one() -> None:
    """A control plane that could not be asked (None) is a problem even if others are fine."""
    assert status_exit_code([doc(HEALTHY), None]) == EXIT_PROBLEMS


def test_not_sent_types_and_no_sidecars() -> None:
    """Types never requested show '-', and an empty control plane says no sidecar is connected."""
    status = with_sidecar_type("Listener", state="NOT_SENT")
    line = next(x for x in render_status(doc(status)).splitlines() if x.startswith("registry-1"))
    assert line.split()[6] == "-"
    empty = copy.deepcopy(HEALTHY)
    empty["sidecars"] = []
    assert "no sidecar connected" in render_status(doc(empty))
    assert status_exit_code([doc(empty)]) == EXIT_OK


def test_events_table_shows_trigger_durations_and_acks() -> None:
    """One line per failover: when, old -> new, trigger and first sign, times, ACKed/total."""
    failover = {
        "group": "mymaster",
        "old": "127.0.0.1:6379",
        "new": "127.0.0.1:6380",
        "trigger": "drain",
        "sign": "+try-failover",
        "epoch": 1,
        "at": 1795823120.4,
        "detect_to_switch_ms": 164.2,
        "detect_to_push_ms": 175.0,
        "switch_to_push_ms": 10.8,
        "detect_to_acked_ms": 179.4,
        "acked": 1,
        "sidecars": 2,
        "superseded": False,
    }
    text = render_events(EventsDocument.from_json({"failovers": [failover]}).failovers)
    header, row = text.splitlines()
    assert header.split()[:3] == ["SWITCHED", "(UTC)", "GROUP"]
    assert row.split() == [
        "2026-11-27T23:45:20Z",
        "mymaster",
        "127.0.0.1:6379",
        "->",
        "127.0.0.1:6380",
        "drain",
        "(+try-failover)",
        "164",
        "ms",
        "175",
        "ms",
        "179",
        "ms",
        "1/2",
    ]
    assert render_events([]).startswith("no failover")
