"""A real failover while hostile clients flood the real server with large Nodes.

``sentinel-xds serve`` over three real Sentinels and a Redis primary/replica,
one real Envoy sidecar; a separate process runs four hostile clients (issue
12's 3 MB Node re-sent on every request, and Nodes just under the limits with
a new id on every stream). While it floods, the primary is ``kill -9``ed. The
bounds are correctness bounds, generous on a shared 2-core machine, not
performance goals (those are in ``bench/hostile_flood.py``):

* the sidecar's /clusters shows the promoted replica within
  :data:`SWITCH_BOUND_S` of that replica reporting ``ROLE`` master (quiet:
  ~30 ms; before the fix a flood starved the promotion probe for ~30 s);
* every ``/healthz`` answers within :data:`HEALTHZ_BOUND_S` (a liveness probe
  with a 1 s timeout never fails; before the fix: 2.2 s median);
* a sidecar started after the failover has its first config, with the new
  primary, within :data:`NEW_SIDECAR_BOUND_S` of starting (before: up to 4.8 s).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from tests.flood import LatencyProbe, flood_progress, start_flood
from tests.integration.conftest import GROUP, Stack
from tests.integration.watchers import FirstTime
from xds.lab import EnvoyProcess, free_port, wait_until
from xds.resources.bootstrap import bootstrap_yaml

pytestmark = pytest.mark.integration

SWITCH_BOUND_S = 3.0
HEALTHZ_BOUND_S = 0.9  # under a liveness probe's 1 s timeout, with margin for a busy CI box
NEW_SIDECAR_BOUND_S = 5.0


def test_failover_switch_healthz_and_new_sidecar_hold_under_a_large_node_flood(
    stack: Stack, tmp_path: Path
) -> None:
    cp = stack.control_plane
    old = stack.primary_address()
    replica = next(n for n in stack.cluster.nodes if n.address != old)
    flood = start_flood(tmp_path / "flood", cp.xds, clients=4, seconds=120)
    sidecar: EnvoyProcess | None = None
    role = replica.client(socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        wait_until(
            lambda: flood_progress(flood)["requests"] >= 100, 20, what="the flood to be flowing"
        )
        before = flood_progress(flood)
        with LatencyProbe(f"http://{cp.admin}/healthz", interval=0.05) as healthz:
            is_master = lambda: str(role.execute_command("ROLE")[0]) == "master"  # noqa: E731
            with (
                FirstTime(is_master, 0.002) as master,
                FirstTime(lambda: stack.envoy_hosts() == [replica.address], 0.005) as switch,
            ):
                stack.cluster.node(old).kill()
                wait_until(lambda: switch.at, 30, what="the sidecar to switch")
                wait_until(lambda: master.at, 5, what="the replica to report master")
            started = time.monotonic()
            admin = Address("127.0.0.1", free_port())
            listen = {GROUP: Address("127.0.0.1", free_port())}
            sidecar = EnvoyProcess.start(
                tmp_path,
                bootstrap_yaml("late-sidecar", [cp.xds], admin=admin, listen=listen),
                admin.port,
                name="late-sidecar",
            )
            sidecar.wait_cluster_hosts(f"redis/{GROUP}", [replica.address], timeout=30)
            first_config_s = time.monotonic() - started
        window_end = time.time()
        wait_until(lambda: flood_progress(flood)["at"] > window_end, 10, what="flood progress")
        during = flood_progress(flood)
        assert flood.alive, "the flood ended before the failover was over"
    finally:
        role.close()
        flood.stop()
        if sidecar is not None:
            sidecar.stop()

    assert switch.at is not None and master.at is not None
    switch_s = switch.at - master.at
    stalls = [(e.get("stall_ms"), e.get("task")) for e in cp.events("loop.stalled")]
    seen = (
        f"switch {switch_s * 1000:.0f} ms after ROLE master; /healthz max "
        f"{max(healthz.latencies) * 1000:.0f} ms, p50 {healthz.percentile(0.5) * 1000:.0f} ms "
        f"over {len(healthz.latencies)}; first config {first_config_s:.2f} s; "
        f"flood {during['requests'] - before['requests']} requests "
        f"({(during['bytes'] - before['bytes']) / 1e6:.0f} MB) meanwhile; stalls {stalls}"
    )
    assert during["requests"] > before["requests"], seen
    assert switch_s < SWITCH_BOUND_S, seen
    assert healthz.failures == 0 and max(healthz.latencies) < HEALTHZ_BOUND_S, seen
    assert first_config_s < NEW_SIDECAR_BOUND_S, seen
    assert cp.events("failover.aborted") == [], seen
    print(seen)
