"""Per-peer fairness and bounded Node work on the real grpcio server.

One address cannot take every stream slot (``max_streams_per_peer``) nor hold
one without speaking (``first_request_timeout_s``); a Node over the limits
ends its stream with INVALID_ARGUMENT naming the limit; a Node is decoded
once, not on every request that carries it. A second peer address is real: a
small TCP relay connects to the server from 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import structlog
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.google.protobuf import Struct

from tests.adsclient import AdsClient
from tests.component.conftest import A, snap
from tests.component.test_fuzz_requests import SOTW, assert_serves_a_good_client, converse
from tests.support import wait_for
from xds.ads.cache import SnapshotCache
from xds.ads.discovery_request import DEFAULT_MAX_METADATA_VALUES
from xds.ads.limits import peer_host
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import CLUSTER, LISTENER
from xds.service.metrics import Metrics

FIXTURE = Path(__file__).parents[2] / "bench" / "fixtures" / "envoy-first-request.bin"


def request(node: Node | None = None, type_url: str = CLUSTER) -> bytes:
    req = DiscoveryRequest(type_url=type_url)
    if node is not None:
        req.node = node
    return bytes(req)


def big_node(values: int, node_id: str = "big") -> Node:
    """A Node whose metadata is a list of ``values`` numbers (~11 bytes each)."""
    return Node(id=node_id, metadata=Struct.from_dict({"numbers": list(range(values))}))


async def relay(target_port: int, source: str) -> tuple[asyncio.Server, int]:
    """A TCP relay on 127.0.0.1 that connects to the server from ``source``: a second peer."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", target_port, local_addr=(source, 0)
        )
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def fair(metrics: Metrics) -> AsyncIterator[XdsServer]:
    srv = XdsServer(
        SnapshotCache(),
        Sidecars(metrics),
        max_streams=50,
        max_streams_per_peer=3,
        first_request_timeout_s=0.5,
        max_node_bytes=100_000,
    )
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    yield srv
    await srv.stop(0)


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:5000", "127.0.0.1"),
        ("ipv4:10.1.2.3:1", "10.1.2.3"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:[fe80::1%eth0]:80", "fe80::1%eth0"),
        ("unix:/run/xds.sock", "unix:/run/xds.sock"),
        ("", ""),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


async def test_one_peer_cannot_take_every_slot(fair: XdsServer, metrics: Metrics) -> None:
    """Beyond max_streams_per_peer a peer's new stream is refused with RESOURCE_EXHAUSTED
    naming the limit and counted by reason, while another address is still served; a
    stream that closes gives its peer the slot back."""
    mine = [AdsClient(f"127.0.0.1:{fair.port}") for _ in range(3)]
    extra: AdsClient | None = None
    relay_server, relay_port = await relay(fair.port, "127.0.0.2")
    other = AdsClient(f"127.0.0.1:{relay_port}")
    again: AdsClient | None = None
    try:
        for i, client in enumerate(mine):
            await client.send(CLUSTER, node_id=f"mine-{i}")
            await client.recv()
        extra = AdsClient(f"127.0.0.1:{fair.port}")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await extra.send(CLUSTER, node_id="one-too-many")
            await extra.recv()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per-peer stream limit reached (3 streams from 127.0.0.1" in (
            err.value.details() or ""
        )
        await other.send(CLUSTER, node_id="other-peer")
        assert (await other.recv()).resources
        peers = {peer_host(s.peer) for s in fair.sidecars.all()}
        assert peers == {"127.0.0.1", "127.0.0.2"}
        text = metrics.render().decode()
        assert 'sentinel_xds_streams_refused_total{reason="max_streams_per_peer"} 1.0' in text
        await mine[0].close()
        await wait_for(lambda: fair.open_streams == 3, 5, "a stream of the first peer closed")
        again = AdsClient(f"127.0.0.1:{fair.port}")
        await again.send(CLUSTER, node_id="again")
        assert (await again.recv()).resources
    finally:
        for c in (*mine, extra, other, again):
            if c is not None:
                await c.close()
        relay_server.close()


async def test_silent_stream_is_closed_and_frees_its_slot(
    fair: XdsServer, metrics: Metrics
) -> None:
    """A stream that sends nothing within first_request_timeout_s ends with
    DEADLINE_EXCEEDED and a message naming the setting; its slot is free again (the
    peer, at its limit before, opens a new stream)."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{fair.port}") for _ in range(3)]
    try:
        calls = [
            ch.stream_stream(SOTW, request_serializer=bytes, response_deserializer=bytes)()
            for ch in channels
        ]
        await wait_for(lambda: fair.open_streams == 3, 5, "three silent streams open")
        with structlog.testing.capture_logs() as logs:
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async with asyncio.timeout(5):
                        await call.read()
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "xds.first_request_timeout_s" in (err.value.details() or "")
            await wait_for(lambda: fair.open_streams == 0, 5, "silent streams closed")
        refused = [e for e in logs if e["event"] == "xds.stream.refused"]
        assert len(refused) == 1  # three closures, one line (rate-limited)
        assert refused[0]["reason"] == "first_request_timeout"
        text = metrics.render().decode()
        assert 'sentinel_xds_streams_refused_total{reason="first_request_timeout"} 3.0' in text
        client = AdsClient(f"127.0.0.1:{fair.port}")
        try:
            await client.send(CLUSTER, node_id="after")
            assert (await client.recv()).resources
            # a stream that spoke is never closed for silence: still open after the deadline
            await client.expect_silence(0.8)
            assert fair.open_streams == 1
        finally:
            await client.close()
    finally:
        for ch in channels:
            await ch.close()


async def test_node_over_the_size_cap_is_invalid_argument(
    fair: XdsServer, metrics: Metrics
) -> None:
    """A Node over max_node_bytes ends the stream with INVALID_ARGUMENT naming
    xds.max_node_bytes, on the first request and on a later one alike."""
    huge = request(big_node(20_000))  # ~220 KB, over this server's 100,000
    outcome = await converse(fair.port, SOTW, [huge])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "over xds.max_node_bytes (100000)" in outcome.details
    later = [request(Node(id="ok")), request(type_url=LISTENER), huge]
    outcome = await converse(fair.port, SOTW, later)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "xds.max_node_bytes" in outcome.details
    text = metrics.render().decode()
    assert 'sentinel_xds_streams_refused_total{reason="node_limits"} 2.0' in text
    assert fair.limits.nodes.conversions == 1  # only the small Node was ever decoded


def one_byte_names(count: int, type_url: str = CLUSTER) -> bytes:
    """A DiscoveryRequest naming ``count`` one-byte resources: 3 bytes a name on the wire,
    the most names a request can carry for its size."""
    return b"\x1a\x01x" * count + bytes(DiscoveryRequest(type_url=type_url))


async def test_request_over_the_size_cap_is_refused_unparsed_and_counted(
    fair: XdsServer, metrics: Metrics
) -> None:
    """grpc parses requests on the event loop; a request over max_node_bytes + 256 KiB is
    refused before it is parsed (its names are never counted), with INVALID_ARGUMENT
    naming xds.max_node_bytes, and counted as a node_limits refusal."""
    huge = one_byte_names(fair.max_request_bytes // 3 + 1)
    assert fair.max_request_bytes < len(huge) < 2 * fair.max_request_bytes
    outcome = await converse(fair.port, SOTW, [huge])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert f"request is {len(huge)} bytes" in outcome.details
    assert "xds.max_node_bytes" in outcome.details
    assert "resource names" not in outcome.details  # refused before parsing
    text = metrics.render().decode()
    assert 'sentinel_xds_streams_refused_total{reason="node_limits"} 1.0' in text


async def test_request_beyond_twice_the_cap_is_refused_by_grpc_itself(
    fair: XdsServer, metrics: Metrics
) -> None:
    """Beyond twice the cap grpc refuses the message before any of our code runs (which
    bounds the memory a request takes): the client gets RESOURCE_EXHAUSTED saying so;
    the server sees a stream that ended, leaves nothing open, and counts no refusal
    (documented in xds/ads/server.py)."""
    huge = one_byte_names(1_000_000)  # 3 MB, as issue 12's request; grpc's old limit was 4 MiB
    assert len(huge) > 2 * fair.max_request_bytes
    outcome = await converse(fair.port, SOTW, [huge])
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    assert "larger than max" in outcome.details
    await wait_for(lambda: fair.open_streams == 0 and len(fair.sidecars) == 0, 5, "stream cleanup")
    assert fair.refused == 0
    await assert_serves_a_good_client(fair.port)


async def test_node_metadata_over_the_value_cap_is_invalid_argument(fair: XdsServer) -> None:
    """Metadata with more values than allowed (under the byte cap) is refused by name,
    after bounded work."""
    outcome = await converse(fair.port, SOTW, [request(big_node(DEFAULT_MAX_METADATA_VALUES))])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"more than {DEFAULT_MAX_METADATA_VALUES} values" in outcome.details


async def test_node_is_decoded_once_per_distinct_node(fair: XdsServer) -> None:
    """Requests re-sending the same Node, and new streams with it, decode it once; a
    different Node is decoded once more. The real Envoy first request (~61 KB) is within
    the default limits."""
    envoy_first = FIXTURE.read_bytes()
    same = request(big_node(500, "repeat"))
    for _ in range(2):
        outcome = await converse(fair.port, SOTW, [same, same, same, same])
        assert outcome.code == grpc.StatusCode.OK, outcome
    assert fair.limits.nodes.conversions == 1
    outcome = await converse(fair.port, SOTW, [request(big_node(500, "another"))])
    assert outcome.code == grpc.StatusCode.OK, outcome
    assert fair.limits.nodes.conversions == 2
    default = XdsServer(SnapshotCache(), Sidecars())
    await default.start("127.0.0.1", 0)
    try:
        default.cache.set(snap(A))
        outcome = await converse(default.port, SOTW, [envoy_first, envoy_first])
        assert outcome.code == grpc.StatusCode.OK, outcome
        assert default.limits.nodes.conversions == 1
    finally:
        await default.stop(0)
