"""Two control-plane replicas, one real Envoy sidecar whose bootstrap lists both.

Replicas watch Sentinel independently and must be interchangeable: identical
versions for identical topology, so a sidecar that moves from one to the other
changes nothing; and when one dies in the middle of a failover, the sidecar
still ends on the new primary through the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP
from tests.integration.writer import Writer
from tests.resp import OneConnection
from xds.lab import EnvoyProcess, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.resources.bootstrap import bootstrap_yaml
from xds.service.admin_documents import SidecarState

pytestmark = pytest.mark.integration

NODE = "sidecar-ha"


@dataclass
class HaStack:
    cluster: SentinelCluster
    replicas: list[ControlPlane]
    envoy: EnvoyProcess
    listen: Address

    def connected(self) -> list[ControlPlane]:
        """Replicas (alive) that have our sidecar's stream open right now."""
        return [cp for cp in self.replicas if cp.alive and _sidecar(cp) is not None]

    def only_connected(self) -> ControlPlane:
        found = wait_until(self.connected, 10, what="the sidecar's stream on one replica")
        assert len(found) == 1, "one Envoy must hold exactly one ADS stream"
        return found[0]


def _sidecar(cp: ControlPlane) -> SidecarState | None:
    return cp.status().sidecar(NODE)


def _synced_on(cp: ControlPlane, primary: Address | None = None) -> bool:
    """The sidecar ACKed this replica's current Listener, Cluster and endpoints
    (and, if given, routes to ``primary``)."""
    sc = _sidecar(cp)
    if sc is None:
        return False
    if not sc.synced("Listener", "Cluster", "ClusterLoadAssignment"):
        return False
    return primary is None or sc.primaries.get(GROUP) == str(primary)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HaStack]:
    cluster = SentinelCluster.start(tmp_path, groups=(GROUP,))
    try:
        listen = Address("127.0.0.1", free_port())
        replicas = []
        for i in range(2):
            xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
            text = config_yaml(cluster.sentinel_addresses, {GROUP: listen}, xds, admin)
            replicas.append(ControlPlane(tmp_path, text, xds, admin, name=f"replica-{i}"))
        for cp in replicas:
            cp.start()
        admin_port = free_port()
        envoy = EnvoyProcess.start(
            tmp_path,
            bootstrap_yaml(
                NODE, [cp.xds for cp in replicas], admin=Address("127.0.0.1", admin_port)
            ),
            admin_port,
            name=NODE,
        )
        envoy.wait_listener(listen.port, timeout=20)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [cluster.current_primary(GROUP).address])
        yield HaStack(cluster, replicas, envoy, listen)
    finally:
        stop_all()
        cluster.stop()


def test_replicas_agree_and_losing_one_causes_no_config_churn(
    ha: HaStack, record_property: Any
) -> None:
    """Both replicas report the same versions for the same topology, and those are what
    Envoy ACKed. kill -9 of the replica holding the sidecar's stream: Envoy reconnects to
    the other, re-ACKs the very same versions, modifies no cluster or listener, and keeps
    routing to the primary."""
    first, second = (cp.status().versions for cp in ha.replicas)
    assert first == second
    assert set(first) == {"Listener", "Cluster", "ClusterLoadAssignment"}
    connected = ha.only_connected()
    wait_until(lambda: _synced_on(connected), 10, what="sidecar synced on its replica")
    survivor = next(cp for cp in ha.replicas if cp is not connected)
    versions, clusters_modified, listeners_modified = ha.envoy.xds_state()
    assert versions["cds"] == first["Cluster"] and versions["lds"] == first["Listener"]

    started = time.monotonic()
    connected.kill()
    wait_until(lambda: _synced_on(survivor), 20, interval=0.02, what="sidecar on the survivor")
    record_property("reconnect_to_survivor_s", round(time.monotonic() - started, 3))

    sc = _sidecar(survivor)
    assert sc is not None
    assert {t: sc.types[t].acked for t in first} == first
    assert ha.envoy.xds_state() == (versions, clusters_modified, listeners_modified)
    assert ha.envoy.stats().get("control_plane.connected_state") == 1
    conn = OneConnection("127.0.0.1", ha.listen.port)
    try:
        assert conn.command("SET", "after-replica-loss", "1") == "OK"
    finally:
        conn.close()
    client = ha.cluster.current_primary(GROUP).client()
    try:
        assert client.get("after-replica-loss") == "1"
    finally:
        client.close()


def test_replica_killed_during_failover_sidecar_follows_via_survivor(
    ha: HaStack, record_property: Any
) -> None:
    """kill -9 of the Redis primary, then (before Sentinel has promoted anyone) of the
    replica holding the sidecar's stream: the surviving replica sees the failover and the
    sidecar ends on the new primary through it, and the client's writes land there on the
    same connection."""
    old = ha.cluster.current_primary(GROUP).address
    connected = ha.only_connected()
    survivor = next(cp for cp in ha.replicas if cp is not connected)
    writer = Writer("127.0.0.1", ha.listen.port).start()
    try:
        wait_until(lambda: len(writer.result.acked) >= 10, 10, what="writes before the kill")
        ha.cluster.node(old).kill()
        connected.kill()
        new = ha.cluster.wait_failover(GROUP, old, timeout=30).address
        ha.envoy.wait_cluster_hosts(f"redis/{GROUP}", [new], timeout=15)
        wait_until(lambda: _synced_on(survivor, new), 15, what="sidecar ACKed the new primary")
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 10, 15, what="writes after failover")
    finally:
        result = writer.stop()
    assert result.connection_lost is None
    assert not connected.alive
    assert not [e for e in connected.events("primary.changed") if e.get("new") == str(new)], (
        "the killed replica saw the failover: it died too late to test anything"
    )
    switched = [e for e in survivor.events("primary.changed") if e.get("new") == str(new)]
    assert switched, "the surviving replica never published the new primary"
    client = ha.cluster.node(new).client()
    try:
        after = result.acked[before:]
        assert client.exists(*after) == len(after)
    finally:
        client.close()
    record_property("failed_commands", len(result.errors))
