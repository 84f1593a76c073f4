"""The failover timeline and dissenting Sentinels, with real Redis, Sentinels and Envoy.

* A real ``+sdown``/``-sdown`` blip of the primary followed by a planned
  ``SENTINEL FAILOVER``: the failover's record in ``/events`` starts at or
  after the ``SENTINEL FAILOVER`` command, not at the blip.
* A fourth Sentinel that names another Redis at a much higher config epoch
  (a rogue or misconfigured one): the majority's primary stays, and
  ``/status``, ``/metrics`` and the log report the dissent.

Times are recorded (``record_property``), never asserted.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redis_sentinel_watch import Address
from redis_sentinel_watch.blocking import command
from tests.integration.conftest import GROUP, Stack
from xds.lab import RedisNode, SentinelCluster, SentinelNode, free_port, wait_until
from xds.lab.controlplane import ControlPlane
from xds.service.admin_documents import EventsDocument, FailoverEvent, GroupState

pytestmark = pytest.mark.integration


def admin_get(stack: Stack, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{stack.control_plane.admin}{path}", timeout=2) as resp:
        body: bytes = resp.read()
    return body


def failovers(stack: Stack) -> tuple[FailoverEvent, ...]:
    return EventsDocument.from_json(json.loads(admin_get(stack, "/events?n=20"))).failovers


def flags(sentinel: SentinelNode) -> set[str]:
    return set(sentinel.master_info(GROUP).get("flags", "").split(","))


def logged(stack: Stack, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e for e in stack.control_plane.events(name) if all(e.get(k) == v for k, v in match.items())
    ]


def test_sdown_blip_then_planned_failover_is_timed_from_the_failover(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    """One Sentinel (down-after 200 ms; the others 1000 ms, so no quorum and no failover)
    flags the SIGSTOPped primary +sdown, and -sdown once it is SIGCONTed; then SENTINEL
    FAILOVER. The control plane saw the blip as a sign and cleared it, and the failover's
    record starts at or after the command: it is not charged with the blip."""
    old = stack.primary_address()
    primary = stack.cluster.node(old)
    quick, leader = stack.cluster.sentinels[0], stack.cluster.sentinels[1]
    with quick.client() as c:
        command(c, "SENTINEL", "SET", GROUP, "down-after-milliseconds", "200")

    blip_at = time.time()
    primary.pause()
    try:
        wait_until(lambda: "s_down" in flags(quick), 5, interval=0.02, what="+sdown (quick)")
    finally:
        primary.resume()
    wait_until(lambda: "s_down" not in flags(quick), 5, interval=0.02, what="-sdown (quick)")
    assert all("s_down" not in flags(s) for s in stack.cluster.sentinels[1:])
    wait_until(
        lambda: logged(stack, "failover.sign_cleared", group=GROUP),
        10,
        interval=0.05,
        what="the control plane to clear the blip's sign",
    )
    detected = logged(stack, "failover.detected", group=GROUP)
    assert detected and detected[0]["trigger"] in {"+sdown", "poll:primary-down"}

    commanded_at = time.time()
    with leader.client() as c:
        command(c, "SENTINEL", "FAILOVER", GROUP)
    wait_until(
        lambda: any(f.old == str(old) for f in failovers(stack)),
        30,
        interval=0.1,
        what="/events to record the failover",
    )
    record = next(f for f in failovers(stack) if f.old == str(old))
    assert record.detect_to_switch_ms is not None
    started_at = record.at - record.detect_to_switch_ms / 1000
    record_property("blip_before_failover_ms", round((commanded_at - blip_at) * 1000))
    record_property("sign", record.sign)
    record_property("detect_to_switch_ms", record.detect_to_switch_ms)
    record_property("detect_to_acked_ms", record.detect_to_acked_ms or -1)
    assert record.sign not in {"+sdown", "poll:primary-down"}, record
    # 1 ms: detect_to_switch_ms is rounded to 0.1 ms; both clocks are this host's
    assert started_at >= commanded_at - 0.001, (started_at, commanded_at, record)
    assert record.trigger == "sentinel-event"


def test_sentinel_at_a_higher_epoch_is_outvoted_and_reported(tmp_path: Path) -> None:
    """A fourth Sentinel, listed in the control plane's config, monitors another Redis under
    the group's name at config epoch 99 (a misconfigured or rogue one). Three of four still
    name the primary: /status keeps it, and /status, /metrics and one ``sentinel.dissent``
    log line report the rogue with its view and the majority's; when it stops answering,
    ``sentinel.dissent_cleared``.

    The rogue has an address of its own: restarted on an honest Sentinel's address, the
    honest ones keep sending it hellos, it answers with its epoch-99 configuration and they
    all adopt it (real Sentinel behaviour, seen while writing this test)."""
    cluster = SentinelCluster.start(tmp_path, groups=(GROUP,))
    started: list[RedisNode | SentinelNode | ControlPlane] = []
    try:
        elsewhere = RedisNode.start(tmp_path / "elsewhere")
        started.append(elsewhere)
        rogue = SentinelNode.start(
            tmp_path / "rogue",
            monitors=[(GROUP, elsewhere.address)],
            extra_conf=["sentinel current-epoch 99"],
            group_conf=["sentinel config-epoch {group} 99"],
        )
        started.append(rogue)
        assert rogue.master_info(GROUP)["config-epoch"] == "99"
        primary = cluster.current_primary(GROUP).address
        cp = ControlPlane.for_topology(
            tmp_path,
            [*cluster.sentinel_addresses, rogue.address],
            {GROUP: Address("127.0.0.1", free_port())},
        ).start()
        started.append(cp)

        def group() -> GroupState:
            found = cp.status().group(GROUP)
            assert found is not None
            return found

        wait_until(
            lambda: any(d.sentinel == str(rogue.address) for d in group().dissent),
            30,
            interval=0.2,
            what="/status to report the dissenting Sentinel",
        )
        now = group()
        (dissent,) = now.dissent
        assert dissent.reasons == ("other-primary", "higher-epoch")
        assert (dissent.primary, dissent.epoch) == (str(elsewhere.address), 99)
        assert (dissent.majority_primary, dissent.majority_epoch) == (str(primary), 0)
        assert (now.primary, now.config_epoch, now.degraded) == (str(primary), 0, False)
        assert (now.agreeing, now.sentinels) == (3, 4)
        assert all(s.master_addr(GROUP) == primary for s in cluster.sentinels)

        with urllib.request.urlopen(f"http://{cp.admin}/metrics", timeout=2) as resp:
            metrics = resp.read().decode()

        def gauge(sentinel: Address) -> str:
            return f'sentinel_xds_sentinel_dissent{{group="{GROUP}",sentinel="{sentinel}"}}'

        assert f"{gauge(rogue.address)} 1.0" in metrics
        assert f"{gauge(cluster.sentinels[0].address)} 0.0" in metrics
        lines = [e for e in cp.events("sentinel.dissent") if e["sentinel"] == str(rogue.address)]
        assert len(lines) == 1
        assert (lines[0]["says"], lines[0]["epoch"], lines[0]["majority"]) == (
            str(elsewhere.address),
            99,
            str(primary),
        )

        rogue.stop()  # no answer, no view: reported unreachable instead
        wait_until(
            lambda: cp.events("sentinel.dissent_cleared"),
            15,
            interval=0.2,
            what="the dissent to be cleared",
        )
        assert group().dissent == () and group().primary == str(primary)
    finally:
        for process in reversed(started):
            process.stop()
        cluster.stop()
