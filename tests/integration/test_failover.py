"""A client writing through a real Envoy sidecar across real Redis failovers.

Checks what users care about, observed from outside: the client's one TCP
connection survives, its writes land on the new primary, Envoy's /clusters
shows the new primary and never the old one again, and no write the client was
told OK about is missing afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP, Stack, start_stack
from tests.integration.watchers import EnvoyWatch
from tests.integration.writer import Writer
from xds.lab import wait_until

pytestmark = pytest.mark.integration


def missing_on(stack: Stack, node_address: Address, keys: list[str]) -> list[str]:
    client = stack.cluster.node(node_address).client()
    try:
        present = client.exists(*keys) if keys else 0
        if present == len(keys):
            return []
        return [k for k in keys if not client.exists(k)]
    finally:
        client.close()


def test_kill_primary_client_keeps_connection_and_writes_land_on_new_primary(
    stack: Stack,
) -> None:
    """kill -9 of the primary: same client connection, writes resume on the promoted replica,
    and Envoy's /clusters lists the new primary only."""
    old = stack.primary_address()
    connections_before = stack.envoy.stats().get("redis.mymaster.downstream_cx_total", 0)
    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the kill")
    stack.cluster.node(old).kill()
    new = stack.cluster.wait_failover(GROUP, old, timeout=30).address
    stack.envoy.wait_cluster_hosts(f"redis/{GROUP}", [new], timeout=15)
    before = len(writer.result.acked)
    wait_until(lambda: writer.acked_since(before) >= 20, 15, what="writes after the failover")
    result = writer.stop()

    assert result.connection_lost is None, "the client's connection to the sidecar was closed"
    assert stack.envoy_hosts() == [new]
    after_switch = result.acked[before:]
    assert missing_on(stack, new, after_switch) == []
    stats = stack.envoy.stats()
    assert stats.get("redis.mymaster.downstream_cx_total") == connections_before + 1
    assert stats.get("redis.mymaster.downstream_cx_active") == 0  # closed by writer.stop()


@pytest.fixture
def slow_timeout_stack(tmp_path: Path) -> Iterator[Stack]:
    """op_timeout 30 s: only the cluster swap, not a timeout, can fail an in-flight command."""
    s = start_stack(tmp_path, op_timeout_ms=30_000)
    try:
        yield s
    finally:
        s.envoy.stop()
        s.control_plane.stop()
        s.cluster.stop()


def test_frozen_primary_never_reappears_and_no_acked_write_is_lost(
    slow_timeout_stack: Stack,
) -> None:
    """SIGSTOP the primary until Sentinel promotes the replica, then SIGCONT it.

    The write in flight to the frozen primary must fail rather than complete
    later (it would be acknowledged and then discarded when Sentinel demotes the
    node); the old primary must never show up in Envoy again; every write the
    client got OK for must be on the final primary.
    """
    stack = slow_timeout_stack
    old = stack.primary_address()
    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the freeze")
    old_node = stack.cluster.node(old)
    old_node.pause()
    try:
        new = stack.cluster.wait_failover(GROUP, old, timeout=30).address
        stack.envoy.wait_cluster_hosts(f"redis/{GROUP}", [new], timeout=15)
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 10, 15, what="writes on the new primary")
    finally:
        old_node.resume()

    with EnvoyWatch(stack) as envoy:
        # Sentinel turns the woken old primary into a replica of the new one; wait for its sync
        wait_until(
            lambda: old_node.role() == "slave",
            30,
            what="old primary demoted",
            ignore=(OSError, Exception),
        )
        old_node.wait_replica_synced(timeout=30)
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 20, 15, what="writes after the rejoin")
    result = writer.stop()

    assert not envoy.ever_routed_to(old), "Envoy routed to the old primary again after it woke up"
    assert result.connection_lost is None
    assert result.errors, "the write in flight to the frozen primary should have failed"
    final = stack.primary_address()
    assert final == new
    assert missing_on(stack, final, result.acked) == []


def test_control_plane_restart_causes_no_churn_and_routing_continues(stack: Stack) -> None:
    """While the control plane is down Envoy keeps routing; after a restart it gets the
    very same versions, and no cluster or listener is modified."""
    from tests.resp import OneConnection

    versions_before, clusters_modified, listeners_modified = stack.envoy.xds_state()
    assert versions_before.get("cds") and versions_before.get("lds")
    stack.control_plane.kill()
    conn = OneConnection("127.0.0.1", stack.listen.port)
    try:
        assert conn.command("SET", "during-outage", "1") == "OK"
        assert conn.command("GET", "during-outage") == "1"
    finally:
        conn.close()
    assert stack.envoy_hosts() == [stack.primary_address()]

    stack.control_plane.start()

    def reconnected() -> bool:
        status = stack.control_plane.status()
        return any(
            sc.node_id == "sidecar-1" and sc.synced("Cluster", "Listener")
            for sc in status.sidecars
        )

    wait_until(reconnected, 30, interval=0.2, what="sidecar re-synced with restarted control plane")
    versions_after, clusters_after, listeners_after = stack.envoy.xds_state()
    assert versions_after == versions_before
    assert clusters_after == clusters_modified
    assert listeners_after == listeners_modified
    client = stack.cluster.current_primary(GROUP).client()
    try:
        assert client.get("during-outage") == "1"
    finally:
        client.close()
