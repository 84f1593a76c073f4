"""Server-level behaviour: the stream cap, graceful shutdown, and the real Envoy first request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from tests.adsclient import AdsClient, DeltaAdsClient
from tests.component.conftest import A, snap
from tests.support import wait_for
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import CLUSTER

FIXTURE = Path(__file__).parents[2] / "bench" / "fixtures" / "envoy-first-request.bin"


async def test_stream_cap_refuses_with_resource_exhausted() -> None:
    """Beyond xds.max_streams a new stream is refused with RESOURCE_EXHAUSTED; a slot that
    frees up is usable again."""
    srv = XdsServer(SnapshotCache(), Sidecars(), max_streams=1)
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    # an RPC is admitted when it starts, i.e. when the client object is created
    one = AdsClient(f"127.0.0.1:{srv.port}")
    two: DeltaAdsClient | None = None
    three: AdsClient | None = None
    try:
        await one.send(CLUSTER, node_id="one")
        await one.recv()
        two = DeltaAdsClient(f"127.0.0.1:{srv.port}")
        await two.send(CLUSTER, node_id="two")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await two.recv()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert srv.refused == 1
        await one.close()
        await wait_for(lambda: srv.open_streams == 0, 5, "first stream closed")
        three = AdsClient(f"127.0.0.1:{srv.port}")
        await three.send(CLUSTER, node_id="three")
        assert (await three.recv()).resources
    finally:
        for c in (one, two, three):
            if c is not None:
                await c.close()
        await srv.stop(0)


async def test_stop_ends_streams_with_unavailable_promptly() -> None:
    """Shutdown ends open streams at once with UNAVAILABLE (sidecars reconnect elsewhere),
    rather than leaving them to hang until the grace period runs out."""
    srv = XdsServer(SnapshotCache(), Sidecars())
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    sotw = AdsClient(f"127.0.0.1:{srv.port}")
    delta = DeltaAdsClient(f"127.0.0.1:{srv.port}")
    try:
        await sotw.send(CLUSTER, node_id="s")
        await sotw.recv()
        await delta.send(CLUSTER, node_id="d")
        await delta.recv()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await srv.stop(grace=30)
        assert loop.time() - started < 5
        for client in (sotw, delta):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.recv()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(srv.sidecars) == 0
    finally:
        await sotw.close()
        await delta.close()


async def test_real_envoy_first_request_is_parsed(server: XdsServer) -> None:
    """The ~60 KB first request captured from Envoy 1.40 is served, and the node is recorded."""
    raw = FIXTURE.read_bytes()
    assert len(raw) > 50_000
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        call = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )()
        server.cache.set(snap(A))
        await call.write(raw)
        resp = await asyncio.wait_for(call.read(), 5)
        assert isinstance(resp, bytes) and b"redis/mymaster" in resp
        (sc,) = server.sidecars.all()
        assert sc.node_id == "captured-sidecar"
        assert sc.envoy_version.startswith("envoy/1.")
        call.cancel()
    finally:
        await channel.close()
