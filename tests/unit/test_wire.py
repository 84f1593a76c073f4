"""Hand-framed responses parse back with envoy-data-plane's own classes, and requests
parsed with the protobuf runtime read the same fields envoy-data-plane writes."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import BuildVersion, Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.envoy.type.v3 import SemanticVersion
from envoy_data_plane.google.protobuf import Struct
from envoy_data_plane.google.rpc import Status

from redis_sentinel_watch import Address
from xds.ads.discovery_request import decode_node, parse_delta, parse_sotw
from xds.ads.snapshot import CLUSTER
from xds.ads.wire import delta_response_bytes, sotw_body, sotw_response_bytes, varint
from xds.resources.redis_group import GroupSpec
from xds.resources.snapshot import build_snapshot

SNAP = build_snapshot([GroupSpec("g", Address("127.0.0.1", 6390), Address("127.0.0.1", 7001))])


def test_varint() -> None:
    """Protobuf varints: one byte below 128, little-endian groups of 7 bits above."""
    assert varint(0) == b"\x00" and varint(127) == b"\x7f" and varint(300) == b"\xac\x02"


def test_sotw_response_round_trip() -> None:
    """A framed DiscoveryResponse carries version, resources, type and nonce."""
    res = SNAP.by_type[CLUSTER]
    raw = sotw_response_bytes(sotw_body(res.version, res.items.values(), CLUSTER), "7")
    msg = DiscoveryResponse.FromString(raw)
    assert (msg.version_info, msg.type_url, msg.nonce) == (res.version, CLUSTER, "7")
    assert [r.unpack().name for r in msg.resources] == ["redis/g"]


def test_delta_response_round_trip() -> None:
    """A framed DeltaDiscoveryResponse carries named, versioned resources and removals."""
    res = SNAP.by_type[CLUSTER]
    raw = delta_response_bytes(res.version, res.delta_items.values(), CLUSTER, "3", ["gone"])
    msg = DeltaDiscoveryResponse.FromString(raw)
    assert msg.nonce == "3" and msg.removed_resources == ["gone"]
    (r,) = msg.resources
    assert (r.name, r.version) == ("redis/g", res.resource_versions["redis/g"])
    assert r.resource.unpack().name == "redis/g"


def test_parse_sotw_request() -> None:
    """Node identity, agent version, metadata, names, nonce and NACK detail are read."""
    meta = Struct.from_dict({"sentinel_xds": {"listen": {"g": "127.0.0.1:1"}}})
    node = Node(
        id="n1",
        cluster="c",
        metadata=meta,
        user_agent_name="envoy",
        user_agent_build_version=BuildVersion(
            version=SemanticVersion(major_number=1, minor_number=40, patch=2)
        ),
    )
    raw = bytes(
        DiscoveryRequest(
            version_info="v",
            node=node,
            resource_names=["a", "b"],
            type_url=CLUSTER,
            response_nonce="5",
            error_detail=Status(code=3, message="bad"),
        )
    )
    req = parse_sotw(raw)
    assert (req.type_url, req.resource_names, req.version_info) == (CLUSTER, ("a", "b"), "v")
    assert (req.response_nonce, req.error) == ("5", "bad")
    assert req.node is not None  # kept raw; decoded once per distinct Node
    info = decode_node(req.node)
    assert (info.id, info.cluster, info.user_agent) == ("n1", "c", "envoy/1.40.2")
    assert info.metadata == {"sentinel_xds": {"listen": {"g": "127.0.0.1:1"}}}


def test_parse_ack_has_no_error() -> None:
    """An ACK (no error_detail, or an empty one) is not a NACK."""
    assert parse_sotw(bytes(DiscoveryRequest(type_url=CLUSTER))).error is None
    assert (
        parse_sotw(bytes(DiscoveryRequest(type_url=CLUSTER, error_detail=Status()))).error is None
    )
    assert parse_sotw(bytes(DiscoveryRequest(type_url=CLUSTER))).node is None


def test_parse_delta_request() -> None:
    """Subscribe, unsubscribe, initial versions and the nonce are read."""
    raw = bytes(
        DeltaDiscoveryRequest(
            type_url=CLUSTER,
            resource_names_subscribe=["a"],
            resource_names_unsubscribe=["b"],
            initial_resource_versions={"a": "1"},
            response_nonce="2",
        )
    )
    req = parse_delta(raw)
    assert (req.subscribe, req.unsubscribe, dict(req.initial_versions)) == (
        ("a",),
        ("b",),
        {"a": "1"},
    )
    assert req.response_nonce == "2" and req.error is None
