"""Hostile and broken ADS clients against the real grpcio server, and the request-rate cap.

A raw channel with identity serializers sends whatever bytes hypothesis makes:
garbage, well-formed requests with unknown or invalid type URLs, huge name
lists, wrong nonces, NACKs for nothing, nodes with odd metadata, SotW bytes on
the Delta method. Whatever arrives, the server must answer with a proper gRPC
status (OK after the client half-closes, or INVALID_ARGUMENT with a reason),
never crash or report an internal error, never leave a stream or sidecar
behind, and keep serving a well-behaved client afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import structlog
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DiscoveryRequest,
)
from envoy_data_plane.google.protobuf import Struct
from envoy_data_plane.google.rpc import Status
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.adsclient import AdsClient, DeltaAdsClient
from tests.component.conftest import A, snap
from tests.support import wait_for
from xds.ads.cache import SnapshotCache
from xds.ads.discovery_request import (
    NodeLimitError,
    RequestLimitError,
    decode_node,
    parse_delta,
    parse_sotw,
)
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.ads.stream import MAX_RESOURCE_NAMES, MAX_TYPES, TYPE_PREFIX
from xds.service.metrics import Metrics

SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SOTW, DELTA = SERVICE + "StreamAggregatedResources", SERVICE + "DeltaAggregatedResources"


def _identity(data: bytes) -> bytes:
    return data


# ----------------------------------------------------------------------------- strategies

type_urls = st.one_of(
    st.sampled_from([CLUSTER, ENDPOINT, LISTENER]),
    st.sampled_from(
        [
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "type.googleapis.com/",
            "",
            "*",
            "http://evil/x",
        ]
    ),
    st.text(max_size=40),
    st.text(max_size=20).map(lambda s: "type.googleapis.com/" + s),
)
names = st.one_of(
    st.lists(st.text(max_size=30), max_size=8),
    st.lists(st.sampled_from(["*", "redis/mymaster", "redis/mymaster/127.0.0.1:7001"]), max_size=4),
    st.sampled_from([MAX_RESOURCE_NAMES + 1, 20_000]).map(lambda n: [f"r{i}" for i in range(n)]),
)
nonces = st.one_of(
    st.just(""),
    st.integers(min_value=-5, max_value=50).map(str),
    st.text(max_size=12),
    st.just("9" * 5000),  # beyond Python's int() digit limit
)
metadata_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
nodes = st.one_of(
    st.none(),
    st.builds(
        lambda node_id, cluster, meta: Node(
            id=node_id, cluster=cluster, metadata=Struct.from_dict(meta) if meta else None
        ),
        st.text(max_size=20),
        st.text(max_size=10),
        st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=8), metadata_values, max_size=3),
            st.builds(
                lambda listen: {"sentinel_xds": {"listen": listen}},
                st.dictionaries(
                    st.sampled_from(["mymaster", "nope", ""]), metadata_values, max_size=2
                ),
            ),
        ),
    ),
)
errors = st.one_of(
    st.none(),
    st.builds(lambda c, m: Status(code=c, message=m), st.integers(0, 16), st.text(max_size=30)),
)


@st.composite
def sotw_request(draw: st.DrawFn) -> bytes:
    req = DiscoveryRequest(
        type_url=draw(type_urls),
        resource_names=draw(names),
        version_info=draw(st.text(max_size=20)),
        response_nonce=draw(nonces),
    )
    node, error = draw(nodes), draw(errors)
    if node is not None:
        req.node = node
    if error is not None:
        req.error_detail = error
    return bytes(req)


@st.composite
def delta_request(draw: st.DrawFn) -> bytes:
    req = DeltaDiscoveryRequest(
        type_url=draw(type_urls),
        resource_names_subscribe=draw(names),
        resource_names_unsubscribe=draw(st.lists(st.text(max_size=20), max_size=4)),
        initial_resource_versions=draw(
            st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=4)
        ),
        response_nonce=draw(nonces),
    )
    node, error = draw(nodes), draw(errors)
    if node is not None:
        req.node = node
    if error is not None:
        req.error_detail = error
    return bytes(req)


garbage = st.one_of(
    st.binary(max_size=300),
    st.just(b"\xff" * 16),
    st.just(b"\x0a\x05ab"),  # a truncated length-delimited field
    st.just(b"\x22\x03\xff\xfe\xfd"),  # type_url that is not UTF-8
)


@st.composite
def conversation(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    """A method and up to six messages for it: mostly requests of its own kind, some
    garbage, some of the other variant's kind."""
    method = draw(st.sampled_from([SOTW, DELTA]))
    own = sotw_request() if method == SOTW else delta_request()
    other = delta_request() if method == SOTW else sotw_request()
    messages = draw(st.lists(st.one_of(own, own, own, garbage, other), min_size=1, max_size=6))
    return method, messages


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
async def server() -> AsyncIterator[XdsServer]:
    srv = XdsServer(SnapshotCache(), Sidecars(), max_streams=50)
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    yield srv
    await srv.stop(0)


@dataclass(frozen=True)
class Outcome:
    """How a conversation ended, as the client saw it."""

    code: grpc.StatusCode
    details: str
    #: the client's own write failed because the server had already ended the stream;
    #: grpc's client then reports INTERNAL locally and the server's status is not seen
    local_write_failure: bool


async def converse(port: int, method: str, messages: list[bytes]) -> Outcome:
    """Send ``messages`` on one stream, half-close, read to the end."""
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    try:
        call = channel.stream_stream(
            method, request_serializer=_identity, response_deserializer=_identity
        )()
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            for message in messages:
                await call.write(message)
            await call.done_writing()
        debug = ""
        try:
            async with asyncio.timeout(10):
                while await call.read() is not grpc.aio.EOF:
                    pass
        except grpc.aio.AioRpcError as exc:
            debug = exc.debug_error_string() or ""
        code = await call.code()
        local = code == grpc.StatusCode.INTERNAL and 'Failed "execute_batch"' in debug
        return Outcome(code, await call.details(), local)
    finally:
        await channel.close()


async def assert_serves_a_good_client(port: int) -> None:
    """A well-behaved client gets its Clusters (after hostile ones had their turn)."""
    good = AdsClient(f"127.0.0.1:{port}")
    try:
        await good.send(CLUSTER, node_id="good")
        assert (await good.recv()).resources
    finally:
        await good.close()


# ----------------------------------------------------------------------------- property


def breaks_protocol(method: str, message: bytes, *, first: bool = False) -> bool:
    """Whether the server must reject ``message``: it does not parse as the method's request
    type, its type URL is not a type.googleapis.com/ URL, or it names too many resources;
    or, for the stream's ``first`` request (the only one whose Node is decoded), its Node
    does not decode."""
    try:
        if method == SOTW:
            sotw = parse_sotw(message)
            type_url, count, node = sotw.type_url, len(sotw.resource_names), sotw.node
        else:
            delta = parse_delta(message)
            type_url, node = delta.type_url, delta.node
            count = len(delta.subscribe) + len(delta.unsubscribe) + len(delta.initial_versions)
        if first and node is not None:
            decode_node(node)
    except (DecodeError, NodeLimitError):
        return True
    return not type_url.startswith(TYPE_PREFIX) or count > MAX_RESOURCE_NAMES


@given(conversation())
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_hostile_requests_get_a_status_and_leak_nothing(
    server: XdsServer, case: tuple[str, list[bytes]]
) -> None:
    """Any sequence of hostile messages ends in INVALID_ARGUMENT (with a reason) if one of
    them breaks the protocol and in OK otherwise, never a crash, INTERNAL or UNKNOWN from
    the server, and leaves no stream or sidecar behind. (When the client was still
    writing as the server ended the stream, grpc's client reports INTERNAL for its own
    failed write; the server's rejection is then checked in its log.)"""
    method, messages = case
    with structlog.testing.capture_logs() as logs:
        outcome = await converse(server.port, method, messages)
        await wait_for(
            lambda: server.open_streams == 0 and len(server.sidecars) == 0, 5, "stream cleanup"
        )
    events = [e["event"] for e in logs]
    assert "xds.stream.failed" not in events, logs
    if outcome.local_write_failure:
        assert "xds.stream.rejected" in events
    elif any(breaks_protocol(method, m, first=i == 0) for i, m in enumerate(messages)):
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
        assert outcome.details and "xds.stream.rejected" in events
    else:
        assert outcome.code == grpc.StatusCode.OK, outcome


async def test_server_still_serves_after_hostile_clients(server: XdsServer) -> None:
    """After garbage and protocol violations on several streams at once, a well-behaved
    client on the same server is answered normally, and nothing is left open."""
    hostile = [
        converse(server.port, SOTW, [b"\xff" * 32]),
        converse(server.port, DELTA, [b"\x0a\x05ab"]),
        converse(server.port, SOTW, [bytes(DiscoveryRequest(type_url="nope"))]),
        converse(server.port, DELTA, [bytes(DeltaDiscoveryRequest(type_url="nope"))]),
    ]
    results = await asyncio.gather(*hostile)
    assert {r.code for r in results} == {grpc.StatusCode.INVALID_ARGUMENT}
    await assert_serves_a_good_client(server.port)
    await wait_for(lambda: len(server.sidecars) == 0, 5, "all streams closed")


# ----------------------------------------------------------------------------- one rule each


@pytest.mark.parametrize("method", [SOTW, DELTA])
async def test_garbage_bytes_end_the_stream_with_invalid_argument(
    server: XdsServer, method: str
) -> None:
    """Bytes that are not a request are INVALID_ARGUMENT ("malformed request"), not the
    silent OK end a parse error in the request iterator would otherwise give."""
    outcome = await converse(server.port, method, [b"\xff\xff\xff"])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.details.startswith("malformed request")


async def test_unknown_but_well_formed_type_is_answered_empty(server: XdsServer) -> None:
    """A type we do not serve (e.g. RDS) is not an error: its first request gets an empty
    response, as for any type (the sidecar must not wait on initialisation)."""
    client = AdsClient(f"127.0.0.1:{server.port}")
    route = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    try:
        await client.send(route, ["some-route"], node_id="n")
        resp = await client.recv()
        assert resp.type_url == route and resp.resources == [] and resp.nonce
    finally:
        await client.close()


async def test_too_many_names_and_types_are_refused(server: XdsServer) -> None:
    """More than MAX_RESOURCE_NAMES names in one request, or more than MAX_TYPES distinct
    types on one stream, end the stream with INVALID_ARGUMENT naming the limit."""
    many = bytes(
        DiscoveryRequest(
            type_url=ENDPOINT, resource_names=[f"r{i}" for i in range(MAX_RESOURCE_NAMES + 1)]
        )
    )
    outcome = await converse(server.port, SOTW, [many])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(MAX_RESOURCE_NAMES) in outcome.details
    types = [
        bytes(DiscoveryRequest(type_url=f"type.googleapis.com/t.T{i}", node=Node(id="n")))
        for i in range(MAX_TYPES + 1)
    ]
    outcome = await converse(server.port, SOTW, types)
    assert not outcome.local_write_failure  # the 33rd request is the last one written
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"more than {MAX_TYPES}" in outcome.details


def test_names_are_counted_before_python_values_are_built() -> None:
    """The parsers check max_names on upb's counts, before a tuple or dict of names
    exists (grpc runs them on the event loop): SotW names, and Delta's subscribe,
    unsubscribe and initial_resource_versions together."""
    limit = 100
    sotw = bytes(DiscoveryRequest(type_url=ENDPOINT, resource_names=[f"r{i}" for i in range(101)]))
    with pytest.raises(RequestLimitError, match=rf"101 resource names .* \(limit {limit}\)"):
        parse_sotw(sotw, max_names=limit)
    assert len(parse_sotw(sotw).resource_names) == 101  # no limit asked, none applied
    delta = DeltaDiscoveryRequest(
        type_url=ENDPOINT,
        resource_names_subscribe=[f"s{i}" for i in range(40)],
        resource_names_unsubscribe=[f"u{i}" for i in range(40)],
        initial_resource_versions={f"v{i}": "1" for i in range(21)},
    )
    with pytest.raises(RequestLimitError, match="101 resource names"):
        parse_delta(bytes(delta), max_names=limit)
    delta.initial_resource_versions = {f"v{i}": str(i) for i in range(20)}
    parsed = parse_delta(bytes(delta), max_names=limit)
    assert parsed.initial_versions == {f"v{i}": str(i) for i in range(20)}


def test_initial_resource_versions_parse_as_envoys_map() -> None:
    """initial_resource_versions is read as repeated entries (no upb hash map to build),
    with a map's meaning: a repeated key keeps its last value, a missing key or value
    is the empty string."""
    entry = bytes(DeltaDiscoveryRequest(initial_resource_versions={"a": "1"}))
    later = bytes(DeltaDiscoveryRequest(initial_resource_versions={"a": "2", "b": ""}))
    empty_key = b"\x2a\x03\x12\x01z"  # field 5 {value: "z"}, no key
    parsed = parse_delta(entry + later + empty_key)
    assert parsed.initial_versions == {"a": "2", "b": "", "": "z"}


async def test_too_many_initial_versions_end_a_delta_stream(server: XdsServer) -> None:
    """A Delta request listing more than MAX_RESOURCE_NAMES initial versions ends the
    stream with INVALID_ARGUMENT naming the limit, before a dict of them is built."""
    many = DeltaDiscoveryRequest(
        type_url=ENDPOINT,
        initial_resource_versions={f"r{i}": "v" for i in range(MAX_RESOURCE_NAMES + 1)},
    )
    outcome = await converse(server.port, DELTA, [bytes(many)])
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"(limit {MAX_RESOURCE_NAMES})" in outcome.details


async def test_delta_subscriptions_cannot_grow_without_bound(server: XdsServer) -> None:
    """Delta subscriptions add up across requests; past MAX_RESOURCE_NAMES the stream is
    refused rather than holding an ever-growing set."""
    step = MAX_RESOURCE_NAMES // 2
    requests = [
        bytes(
            DeltaDiscoveryRequest(
                type_url=ENDPOINT, resource_names_subscribe=[f"r{i}-{j}" for j in range(step)]
            )
        )
        for i in range(3)
    ]
    outcome = await converse(server.port, DELTA, requests)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscribed names" in outcome.details


async def test_wrong_nonces_are_ignored_and_the_stream_keeps_working(server: XdsServer) -> None:
    """ACKs and NACKs carrying nonces we never sent change nothing and get no response; the
    real ACK that follows still counts."""
    client = AdsClient(f"127.0.0.1:{server.port}")
    try:
        await client.send(CLUSTER, node_id="n")
        resp = await client.recv()
        for nonce in ("999", "-1", "x", "9" * 5000):
            await client.send(CLUSTER, version="bogus", nonce=nonce, error="not yours")
        await client.expect_silence(0.2)
        (sc,) = server.sidecars.all()
        assert sc.types[CLUSTER].nacks == 0
        await client.ack(resp)
        await wait_for(
            lambda: sc.types[CLUSTER].acked_version == resp.version_info, 5, "the real ACK"
        )
    finally:
        await client.close()


# ----------------------------------------------------------------------------- rate cap


async def test_request_flood_is_delayed_logged_once_and_counted() -> None:
    """With xds.max_requests_per_second, a client flooding one stream has its requests
    delayed, not dropped: the request after the flood is still answered, the flood is
    logged as xds.stream.rate_limited once (not per request), and the delayed requests
    are counted in sentinel_xds_rate_limited_requests_total. A second stream is not
    limited by the first one's flood."""
    metrics = Metrics()
    rate = 20.0
    srv = XdsServer(SnapshotCache(), Sidecars(metrics), max_requests_per_second=rate)
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    flood = DeltaAdsClient(f"127.0.0.1:{srv.port}")
    calm = AdsClient(f"127.0.0.1:{srv.port}")
    try:
        with structlog.testing.capture_logs() as logs:
            await flood.send(CLUSTER, node_id="flooder")
            await flood.recv()
            for _ in range(2 * int(rate)):
                await flood.send(CLUSTER, nonce="stale")  # each one is work for the server
            await flood.send(LISTENER)  # answered only after every request before it
            resp = await flood.recv(timeout=15)
            assert resp.type_url == LISTENER
            await calm.send(CLUSTER, node_id="calm")
            assert (await calm.recv()).resources
        limited = [e for e in logs if e["event"] == "xds.stream.rate_limited"]
        assert len(limited) == 1
        assert limited[0]["node"] == "flooder" and limited[0]["max_requests_per_second"] == rate
        text = metrics.render().decode()
        found = re.search(r"^sentinel_xds_rate_limited_requests_total (\S+)$", text, re.M)
        assert found is not None
        # 2*rate+2 requests against a bucket of `rate`: about `rate` of them wait (fewer if
        # sending them took long enough to refill the bucket), never all of them
        assert 1 <= float(found.group(1)) <= rate + 2
    finally:
        await flood.close()
        await calm.close()
        await srv.stop(0)


async def test_stream_cap_is_counted_in_metrics() -> None:
    """A stream refused by xds.max_streams shows in sentinel_xds_streams_refused_total,
    labelled with the reason (the other reasons are present at zero)."""
    metrics = Metrics()
    srv = XdsServer(SnapshotCache(), Sidecars(metrics), max_streams=1)
    await srv.start("127.0.0.1", 0)
    srv.cache.set(snap(A))
    one = AdsClient(f"127.0.0.1:{srv.port}")
    two: AdsClient | None = None
    try:
        await one.send(CLUSTER, node_id="one")
        await one.recv()
        two = AdsClient(f"127.0.0.1:{srv.port}")  # an RPC is admitted when it starts
        with pytest.raises(grpc.aio.AioRpcError) as err:  # refused on send or on read
            await two.send(CLUSTER, node_id="two")
            await two.recv()
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        text = metrics.render().decode()
        assert 'sentinel_xds_streams_refused_total{reason="max_streams"} 1.0' in text
        assert 'sentinel_xds_streams_refused_total{reason="max_streams_per_peer"} 0.0' in text
    finally:
        await one.close()
        if two is not None:
            await two.close()
        await srv.stop(0)
