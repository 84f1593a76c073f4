"""SotW ADS protocol rules, checked against the real grpcio server with a raw client.

Each test names the rule it guards; together they cover the bugs go-control-plane
and Envoy trackers are known for (NACK loops, stale nonces, unanswered initial
requests, EDS before CDS).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment

from tests.adsclient import AdsClient
from tests.component.conftest import A, B, snap
from xds.ads.server import XdsServer
from xds.ads.sidecars import SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.resources.redis_group import eds_service_name


@pytest.fixture
async def client(server: XdsServer) -> AsyncIterator[AdsClient]:
    c = AdsClient(f"127.0.0.1:{server.port}")
    yield c
    await c.close()


async def test_initial_request_answered_even_when_empty(
    server: XdsServer, client: AdsClient
) -> None:
    """Every first request for a type gets a response, even naming nothing that exists."""
    server.cache.set(snap(A))
    await client.send(ENDPOINT, ["does-not-exist"], node_id="n1")
    resp = await client.recv()
    assert resp.type_url == ENDPOINT and resp.resources == [] and resp.nonce


async def test_full_state_for_cds_and_node_from_first_request(
    server: XdsServer, client: AdsClient
) -> None:
    """CDS wildcard gets every cluster; the node id is taken from the first request only."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="first")
    resp = await client.recv()
    clusters = [r.unpack() for r in resp.resources]
    assert [c.name for c in clusters if isinstance(c, Cluster)] == ["redis/mymaster"]
    await client.send(LISTENER, node_id="second")
    await client.recv()
    (sc,) = server.sidecars.all()
    assert sc.node_id == "first"


async def test_ack_without_change_gets_no_response(server: XdsServer, client: AdsClient) -> None:
    """An ACK of the current version is not answered (no busy loop)."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    resp = await client.recv()
    await client.ack(resp)
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    assert sc.types[CLUSTER].state() is SyncState.SYNCED


async def test_nack_not_resent_and_next_version_sent(server: XdsServer, client: AdsClient) -> None:
    """A NACKed version is never re-sent; the next different version is."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    first = await client.recv()
    await client.send(CLUSTER, version="", nonce=first.nonce, error="bad cluster")
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    assert sc.types[CLUSTER].state() is SyncState.NACKED
    assert sc.types[CLUSTER].nack_detail == "bad cluster"
    server.cache.set(snap(B))
    second = await client.recv()
    assert second.version_info != first.version_info
    await client.ack(second)
    await client.expect_silence()
    assert sc.types[CLUSTER].state() is SyncState.SYNCED


async def test_stale_nonce_ignored(server: XdsServer, client: AdsClient) -> None:
    """A request answering an older response neither ACKs nor NACKs the newer one."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    old = await client.recv()
    server.cache.set(snap(B))
    new = await client.recv()
    await client.send(CLUSTER, version="", nonce=old.nonce, error="late NACK of old")
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    assert sc.types[CLUSTER].nacked_version == ""
    await client.ack(new)
    await client.expect_silence()
    assert sc.types[CLUSTER].state() is SyncState.SYNCED


async def test_eds_named_and_answered_when_it_appears(server: XdsServer, client: AdsClient) -> None:
    """EDS carries only requested names; a name that appears later is pushed then."""
    server.cache.set(snap(A))
    future_name = eds_service_name("mymaster", B)
    await client.send(ENDPOINT, [future_name], node_id="n")
    empty = await client.recv()
    assert empty.resources == []
    await client.ack(empty, [future_name])
    await client.expect_silence()
    server.cache.set(snap(B))
    resp = await client.recv()
    (cla,) = [r.unpack() for r in resp.resources]
    assert isinstance(cla, ClusterLoadAssignment) and cla.cluster_name == future_name


async def test_push_order_cds_then_eds_then_lds(server: XdsServer, client: AdsClient) -> None:
    """On a change, CDS goes out before EDS (make-before-break)."""
    server.cache.set(snap(A))
    await client.send(LISTENER, node_id="n")
    await client.ack(await client.recv())
    await client.send(CLUSTER)
    await client.ack(await client.recv())
    name_a = eds_service_name("mymaster", A)
    await client.send(ENDPOINT, [name_a])
    eds = await client.recv()
    await client.ack(eds, [name_a])
    server.cache.set(snap(B))
    first = await client.recv()
    assert first.type_url == CLUSTER
    await client.ack(first)
    # like Envoy warming the new cluster: ask for its endpoints on the EDS nonce we hold
    name_b = eds_service_name("mymaster", B)
    await client.send(ENDPOINT, [name_a, name_b], version=eds.version_info, nonce=eds.nonce)
    resp = await client.recv()
    assert resp.type_url == ENDPOINT
    assert [r.unpack().cluster_name for r in resp.resources] == [name_b]


async def test_garbage_type_url_rejected(server: XdsServer, client: AdsClient) -> None:
    """A type_url that is not a type.googleapis.com URL ends the stream with INVALID_ARGUMENT."""
    import grpc

    server.cache.set(snap(A))
    await client.send("not-a-type", node_id="n")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.recv()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not-a-type" in (err.value.details() or "")


async def test_stream_closed_removes_sidecar(server: XdsServer, client: AdsClient) -> None:
    """A closed stream leaves no sidecar behind (no leaked watches)."""
    from tests.support import wait_for

    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="n")
    await client.recv()
    assert len(server.sidecars) == 1
    await client.close()
    await wait_for(lambda: len(server.sidecars) == 0, 5, "sidecar removed")


async def test_explicit_wildcard_gets_full_set(server: XdsServer, client: AdsClient) -> None:
    """A CDS request naming ``*`` is wildcard: every cluster, including ones added later."""
    from tests.component.conftest import C, two_groups

    server.cache.set(snap(A))
    await client.send(CLUSTER, ["*"], node_id="n")
    first = await client.recv()
    assert [r.unpack().name for r in first.resources] == ["redis/mymaster"]
    await client.ack(first, ["*"])
    server.cache.set(two_groups(A, C))
    second = await client.recv()
    assert sorted(r.unpack().name for r in second.resources) == ["redis/mymaster", "redis/other"]


async def test_named_cds_gets_only_named(server: XdsServer, client: AdsClient) -> None:
    """A CDS request naming clusters (as gRPC clients do) gets exactly those, not the rest."""
    from tests.component.conftest import C, two_groups

    server.cache.set(two_groups(A, C))
    await client.send(CLUSTER, ["redis/other"], node_id="n")
    resp = await client.recv()
    assert [r.unpack().name for r in resp.resources] == ["redis/other"]


async def test_change_of_every_type_goes_cds_eds_lds(server: XdsServer, client: AdsClient) -> None:
    """When a change touches all three types, the order on the stream is CDS, EDS, LDS."""
    server.cache.set(snap(A))
    name_a = eds_service_name("mymaster", A)
    name_b = eds_service_name("mymaster", B)
    await client.send(LISTENER, node_id="n")
    await client.ack(await client.recv())
    await client.send(CLUSTER)
    await client.ack(await client.recv())
    await client.send(ENDPOINT, [name_a, name_b])
    await client.ack(await client.recv(), [name_a, name_b])
    # new primary (CDS + EDS change) and a new op timeout (LDS change) at once
    server.cache.set(snap(B, op_timeout_ms=1234))
    order = [(await client.recv()).type_url for _ in range(3)]
    assert order == [CLUSTER, ENDPOINT, LISTENER]


async def test_requested_name_resent_after_unsubscribe(
    server: XdsServer, client: AdsClient
) -> None:
    """An EDS name dropped and requested again is sent again although it did not change."""
    server.cache.set(snap(A))
    name = eds_service_name("mymaster", A)
    await client.send(ENDPOINT, [name], node_id="n")
    first = await client.recv()
    await client.ack(first, [])
    await client.expect_silence()
    await client.send(ENDPOINT, [name], version=first.version_info, nonce=first.nonce)
    again = await client.recv()
    assert [r.unpack().cluster_name for r in again.resources] == [name]


async def test_sidecar_state_tracks_versions(server: XdsServer, client: AdsClient) -> None:
    """Per-sidecar state: node, cluster, protocol, sent and ACKed versions per type."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, node_id="sc-1")
    resp = await client.recv()
    await client.ack(resp)
    await client.expect_silence()
    (sc,) = server.sidecars.all()
    assert (sc.node_id, sc.cluster, sc.protocol) == ("sc-1", "test", "sotw")
    cds = sc.types[CLUSTER]
    assert cds.sent_version == resp.version_info
    assert cds.acked_version == resp.version_info
    assert cds.state() is SyncState.SYNCED


async def test_first_request_with_old_nonce_is_answered(
    server: XdsServer, client: AdsClient
) -> None:
    """A reconnecting client's first request may carry a nonce from its previous stream;
    it is still an initial request and is answered."""
    server.cache.set(snap(A))
    await client.send(CLUSTER, version="old", nonce="41", node_id="n")
    resp = await client.recv()
    assert [r.unpack().name for r in resp.resources] == ["redis/mymaster"]
