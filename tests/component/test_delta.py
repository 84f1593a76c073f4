"""Delta ADS protocol rules, checked against the real grpcio server with a raw Delta client.

Each test names the rule it guards. Where Delta differs from SotW (stale nonces,
per-resource versions, ``initial_resource_versions``, ``removed_resources``) the
test says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.adsclient import DeltaAdsClient
from tests.component.conftest import A, B, C, snap, two_groups
from tests.support import wait_for
from xds.ads.server import XdsServer
from xds.ads.sidecars import SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.resources.redis_group import eds_service_name
from xds.resources.snapshot import build_snapshot


@pytest.fixture
async def client(server: XdsServer) -> AsyncIterator[DeltaAdsClient]:
    c = DeltaAdsClient(f"127.0.0.1:{server.port}")
    yield c
    await c.close()


def names(resp) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(r.name for r in resp.resources)


async def test_legacy_wildcard_first_request_answered(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """A first CDS request naming nothing is wildcard and is answered with every cluster."""
    server.cache.set(two_groups(A, C))
    await client.send(CLUSTER, node_id="n")
    resp = await client.recv()
    assert names(resp) == ["redis/mymaster", "redis/other"]
    assert resp.nonce and all(r.version for r in resp.resources)


async def test_initial_request_answered_even_when_empty(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """The first wildcard request is answered even when there is nothing to send
    (go-control-plane PR #927: Envoy would otherwise wait 15 s)."""
    server.cache.set(build_snapshot([]))
    await client.send(LISTENER, node_id="n")
    resp = await client.recv()
    assert resp.type_url == LISTENER and resp.resources == [] and resp.nonce


async def test_explicit_wildcard_and_unsubscribe(server: XdsServer, client: DeltaAdsClient) -> None:
    """``*`` subscribes to everything; unsubscribing ``*`` stops updates for the type."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, ["*"], node_id="n")
    first = await client.recv()
    assert names(first) == ["redis/mymaster"]
    await client.send(CLUSTER, unsubscribe=["*"], nonce=first.nonce)
    (sc,) = server.sidecars.all()
    await wait_for(lambda: not sc.types[CLUSTER].wildcard, 5, "unsubscribe of * applied")
    server.cache.set(snap(B))
    await client.expect_silence()


async def test_ack_without_change_gets_no_response(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """An ACK is not answered when nothing changed; the sidecar is SYNCED."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    await client.ack(await client.recv())
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    assert sc.protocol == "delta" and sc.node_id == "n"
    assert sc.types[CLUSTER].state() is SyncState.SYNCED


async def test_node_from_first_request_only(server: XdsServer, client: DeltaAdsClient) -> None:
    """A node on a later request does not change who the stream is."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="first")
    await client.recv()
    await client.send(LISTENER, node_id="second")
    await client.recv()
    (sc,) = server.sidecars.all()
    assert sc.node_id == "first"


async def test_nack_not_resent_and_next_version_sent(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """A NACKed resource version is not re-sent (no NACK loop); the next one is."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    first = await client.recv()
    await client.send(CLUSTER, nonce=first.nonce, error="cannot bind")
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    ts = sc.types[CLUSTER]
    assert ts.state() is SyncState.NACKED and ts.nack_detail == "cannot bind" and ts.nacks == 1
    # a request that merely re-states the subscription does not bring the rejected version back
    await client.send(CLUSTER, unsubscribe=["redis/unrelated"])
    await client.expect_silence()
    server.cache.set(snap(B))
    second = await client.recv()
    assert names(second) == ["redis/mymaster"]
    assert second.resources[0].version != first.resources[0].version
    await client.ack(second)
    await client.expect_silence()
    assert ts.state() is SyncState.SYNCED


async def test_named_eds_answered_when_it_appears(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """EDS carries only subscribed names; a name that does not exist yet is sent when it appears."""
    server.cache.set(snap(A))
    future = eds_service_name("mymaster", B)
    await client.send(ENDPOINT, [future], node_id="n")
    empty = await client.recv()
    assert empty.resources == []
    await client.ack(empty)
    await client.expect_silence()
    server.cache.set(snap(B))
    resp = await client.recv()
    assert names(resp) == [future]
    assert resp.resources[0].resource.unpack().cluster_name == future


async def test_stale_nonce_still_applies_subscription(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """Unlike SotW, a request with an old nonce is not ignored: its subscribe is served
    (subscriptions are deltas; dropping one would lose it for good)."""
    server.cache.set(two_groups(A, C))
    name_a = eds_service_name("mymaster", A)
    name_c = eds_service_name("other", C)
    await client.send(ENDPOINT, [name_a], node_id="n")
    first = await client.recv()
    await client.ack(first)
    await client.send(ENDPOINT, [name_c], nonce="999")  # a nonce we never sent
    resp = await client.recv()
    assert names(resp) == [name_c]
    (sc,) = server.sidecars.all()
    assert sc.types[ENDPOINT].nacked_version == ""


async def test_subscribed_name_always_sent(server: XdsServer, client: DeltaAdsClient) -> None:
    """A name in resource_names_subscribe is sent even if this stream sent that version before."""
    server.cache.set(snap(A))
    name = eds_service_name("mymaster", A)
    await client.send(ENDPOINT, [name], node_id="n")
    first = await client.recv()
    await client.ack(first)
    await client.send(ENDPOINT, [name])
    again = await client.recv()
    assert names(again) == [name]
    assert again.resources[0].version == first.resources[0].version


async def test_removed_resources_for_deleted_cluster(
    server: XdsServer, client: DeltaAdsClient
) -> None:
    """A cluster that disappears is named in removed_resources; the unchanged one is not re-sent."""
    server.cache.set(two_groups(A, C))
    await client.send(CLUSTER, node_id="n")
    await client.ack(await client.recv())
    server.cache.set(snap(A))
    resp = await client.recv()
    assert resp.resources == []
    assert list(resp.removed_resources) == ["redis/other"]


async def test_reconnect_with_initial_resource_versions(server: XdsServer) -> None:
    """On a new stream, what the sidecar already holds at the current version is not re-sent,
    a stale version is, and a resource that no longer exists is removed."""
    server.cache.set(two_groups(A, C))
    first = DeltaAdsClient(f"127.0.0.1:{server.port}")
    try:
        await first.send(CLUSTER, node_id="n")
        resp = await first.recv()
        held = {r.name: r.version for r in resp.resources}
    finally:
        await first.close()

    # unchanged: the reconnecting sidecar holds exactly what we have
    again = DeltaAdsClient(f"127.0.0.1:{server.port}")
    try:
        await again.send(CLUSTER, node_id="n", initial=held)
        resp = await again.recv()
        assert resp.resources == [] and list(resp.removed_resources) == []
    finally:
        await again.close()

    # changed: mymaster failed over, other is gone
    server.cache.set(snap(B))
    later = DeltaAdsClient(f"127.0.0.1:{server.port}")
    try:
        await later.send(CLUSTER, node_id="n", initial=held)
        resp = await later.recv()
        assert names(resp) == ["redis/mymaster"]
        assert resp.resources[0].version != held["redis/mymaster"]
        assert list(resp.removed_resources) == ["redis/other"]
    finally:
        await later.close()


async def test_push_order_cds_eds_lds(server: XdsServer, client: DeltaAdsClient) -> None:
    """A change touching all three types goes out CDS, then EDS, then LDS."""
    server.cache.set(snap(A))
    name_a = eds_service_name("mymaster", A)
    name_b = eds_service_name("mymaster", B)
    await client.send(LISTENER, node_id="n")
    await client.ack(await client.recv())
    await client.send(CLUSTER)
    await client.ack(await client.recv())
    await client.send(ENDPOINT, [name_a, name_b])
    await client.ack(await client.recv())
    server.cache.set(snap(B, op_timeout_ms=1234))
    order = [(await client.recv()).type_url for _ in range(3)]
    assert order == [CLUSTER, ENDPOINT, LISTENER]
