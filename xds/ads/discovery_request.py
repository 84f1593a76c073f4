"""Fast parsing of ADS requests into small plain values.

Every stream starts with a request carrying the sidecar's ``Node``; Envoy lists
every compiled-in extension there, about 60 KB (``bench/fixtures``). Parsing
that with envoy-data-plane (betterproto2 + pydantic) takes ~20 ms, so a
reconnect storm of a thousand sidecars would cost ~20 s of CPU before a single
response went out. The official protobuf runtime (upb, in C) parses the same
bytes in well under a millisecond (numbers in ``docs/xds.md``).

The obvious way to get the official runtime's Envoy classes, the PyPI
``xds-protos`` package, cannot be used here: it installs a top-level package
named ``xds`` (cncf/xds protos) that ``envoy.config.core.v3.base_pb2``
imports, and that name is this project's own package. So this module declares
only the request messages and the ``Node`` fields the protocol layer reads,
with the real field numbers, as a protobuf descriptor. upb skips every other
field (the extension list included) without building Python objects for it.
Resources are still modelled with envoy-data-plane; only this hot path uses
the protobuf runtime.

The requests declare ``node`` as ``bytes`` (same field number, same wire
format): parsing a request never decodes its Node, whatever it holds. A
client re-sending a 3 MB Node of 280,000 numbers on every request used to
cost ~0.3 s of event loop per request; now it costs a copy, and the Node is
decoded (:func:`decode_node`, bounded) only when a stream starts with a Node
not seen before (:mod:`xds.ads.node`).

grpc calls these parsers on the event loop, so the rest of a request is
bounded too: the server refuses a request over ``xds.max_node_bytes`` + 256 KiB
before parsing it (:mod:`xds.ads.server`), and ``max_names`` is checked on
upb's counts before a tuple or dict of names is built. What is left is upb's
own parse of at most 512 KiB (by default): ~2 ms for 100,000 one-byte names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import struct_pb2 as _struct_pb2  # registers google/protobuf/struct.proto

__all__ = [
    "DEFAULT_MAX_METADATA_DEPTH",
    "DEFAULT_MAX_METADATA_VALUES",
    "DeltaRequest",
    "NodeInfo",
    "NodeLimitError",
    "RequestLimitError",
    "SotwRequest",
    "decode_node",
    "parse_delta",
    "parse_sotw",
]

#: nesting of lists and structs in a Node's metadata (Envoy's own: 2-3 levels)
DEFAULT_MAX_METADATA_DEPTH = 32
#: values (leaves, lists, structs) in a Node's metadata; Envoy's own: a handful, Istio's ~100.
#: Decoding costs ~1.8 µs a value, so this bounds one decode to ~7 ms
DEFAULT_MAX_METADATA_VALUES = 4096

_F = descriptor_pb2.FieldDescriptorProto
_STR, _MSG, _I32, _U32 = _F.TYPE_STRING, _F.TYPE_MESSAGE, _F.TYPE_INT32, _F.TYPE_UINT32
_BYTES = _F.TYPE_BYTES
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_PKG = "sentinel_xds.wire"


def _message(
    file: descriptor_pb2.FileDescriptorProto,
    name: str,
    fields: list[tuple[str, int, int, int, str]],
) -> descriptor_pb2.DescriptorProto:
    msg = file.message_type.add(name=name)
    for fname, number, ftype, label, type_name in fields:
        fd = msg.field.add(name=fname, number=number, type=ftype, label=label)
        if type_name:
            fd.type_name = type_name
    return msg


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    struct_file = descriptor_pb2.FileDescriptorProto()
    _struct_pb2.DESCRIPTOR.CopyToProto(struct_file)
    pool.Add(struct_file)
    f = descriptor_pb2.FileDescriptorProto(
        name="sentinel_xds/wire.proto",
        package=_PKG,
        syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    p = f".{_PKG}."
    _message(f, "SemanticVersion", [
        ("major_number", 1, _U32, _OPT, ""),
        ("minor_number", 2, _U32, _OPT, ""),
        ("patch", 3, _U32, _OPT, ""),
    ])  # fmt: skip
    _message(f, "BuildVersion", [("version", 1, _MSG, _OPT, p + "SemanticVersion")])
    _message(f, "Node", [
        ("id", 1, _STR, _OPT, ""),
        ("cluster", 2, _STR, _OPT, ""),
        ("metadata", 3, _MSG, _OPT, ".google.protobuf.Struct"),
        ("user_agent_name", 6, _STR, _OPT, ""),
        ("user_agent_version", 7, _STR, _OPT, ""),
        ("user_agent_build_version", 8, _MSG, _OPT, p + "BuildVersion"),
    ])  # fmt: skip
    _message(f, "Status", [("code", 1, _I32, _OPT, ""), ("message", 2, _STR, _OPT, "")])
    _message(f, "DiscoveryRequest", [
        ("version_info", 1, _STR, _OPT, ""),
        ("node", 2, _BYTES, _OPT, ""),  # kept raw: see decode_node
        ("resource_names", 3, _STR, _REP, ""),
        ("type_url", 4, _STR, _OPT, ""),
        ("response_nonce", 5, _STR, _OPT, ""),
        ("error_detail", 6, _MSG, _OPT, p + "Status"),
    ])  # fmt: skip
    delta = _message(f, "DeltaDiscoveryRequest", [
        ("node", 1, _BYTES, _OPT, ""),
        ("type_url", 2, _STR, _OPT, ""),
        ("resource_names_subscribe", 3, _STR, _REP, ""),
        ("resource_names_unsubscribe", 4, _STR, _REP, ""),
        ("initial_resource_versions", 5, _MSG, _REP,
         p + "DeltaDiscoveryRequest.InitialResourceVersionsEntry"),
        ("response_nonce", 6, _STR, _OPT, ""),
        ("error_detail", 7, _MSG, _OPT, p + "Status"),
    ])  # fmt: skip
    # Same wire format as Envoy's map<string, string>, declared as a plain repeated
    # message: upb then parses entries without building a hash map (a map of 145,000
    # entries took ~18 ms; these ~3 ms), and parse_delta counts them before any dict.
    entry = delta.nested_type.add(name="InitialResourceVersionsEntry")
    entry.field.add(name="key", number=1, type=_STR, label=_OPT)
    entry.field.add(name="value", number=2, type=_STR, label=_OPT)
    pool.Add(f)
    return pool


_POOL = _build_pool()
_SotwMessage: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PKG}.DiscoveryRequest")
)
_DeltaMessage: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName(f"{_PKG}.DeltaDiscoveryRequest")
)
_NodeMessage: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PKG}.Node"))


class NodeLimitError(ValueError):
    """A Node's metadata is nested deeper or holds more values than allowed."""


class RequestLimitError(ValueError):
    """A request names more resources than allowed (``max_names``)."""


@dataclass(frozen=True)
class NodeInfo:
    """What the protocol layer needs from a ``Node``."""

    id: str
    cluster: str
    user_agent: str  # e.g. "envoy/1.40.0", "gRPC Python/1.85.3"
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SotwRequest:
    type_url: str
    resource_names: tuple[str, ...]
    version_info: str
    response_nonce: str
    error: str | None  # set only on a NACK: the error_detail message (or code)
    node: bytes | None  # the serialized Node, undecoded (see decode_node)


@dataclass(frozen=True)
class DeltaRequest:
    type_url: str
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]
    initial_versions: Mapping[str, str]
    response_nonce: str
    error: str | None
    node: bytes | None


def decode_node(
    raw: bytes,
    *,
    max_depth: int = DEFAULT_MAX_METADATA_DEPTH,
    max_values: int = DEFAULT_MAX_METADATA_VALUES,
) -> NodeInfo:
    """Decode a serialized ``Node`` into a :class:`NodeInfo`, with bounded work.

    Requests keep the Node as raw bytes (the request messages declare the field
    as ``bytes``), so parsing a request costs a copy whatever its Node holds;
    this runs once per distinct Node (:class:`xds.ads.node.NodeDecoder`). The
    metadata is converted by hand rather than with ``json_format.MessageToDict``
    (~1.5 µs a value, 0.3 s for a 3 MB list of numbers) so that the walk stops
    at ``max_values`` values or ``max_depth`` levels with :class:`NodeLimitError`.
    Raises ``DecodeError`` for bytes that are not a Node.
    """
    msg = _NodeMessage.FromString(raw)
    version = ""
    if msg.HasField("user_agent_build_version") and msg.user_agent_build_version.HasField(
        "version"
    ):
        v = msg.user_agent_build_version.version
        version = f"{v.major_number}.{v.minor_number}.{v.patch}"
    elif msg.user_agent_version:
        version = msg.user_agent_version
    agent = msg.user_agent_name or "unknown"
    metadata: dict[str, Any] = {}
    if msg.HasField("metadata"):
        metadata = _MetadataWalk(max_depth, max_values).struct(msg.metadata, 1)
    return NodeInfo(
        id=msg.id,
        cluster=msg.cluster,
        user_agent=f"{agent}/{version}" if version else agent,
        metadata=metadata,
    )


class _MetadataWalk:
    """``google.protobuf.Struct`` → plain values (as ``MessageToDict``), within limits."""

    def __init__(self, max_depth: int, max_values: int) -> None:
        self.max_depth = max_depth
        self.max_values = max_values
        self.left = max_values

    def _take(self, n: int, depth: int) -> None:
        self.left -= n
        if self.left < 0:
            raise NodeLimitError(
                f"node metadata has more than {self.max_values} values (limit {self.max_values})"
            )
        if depth > self.max_depth:
            raise NodeLimitError(
                f"node metadata is nested deeper than {self.max_depth} levels "
                f"(limit {self.max_depth})"
            )

    def struct(self, struct: Any, depth: int) -> dict[str, Any]:
        fields = struct.fields
        self._take(len(fields), depth)
        return {key: self.value(fields[key], depth) for key in fields}

    def value(self, value: Any, depth: int) -> Any:
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            return self.struct(value.struct_value, depth + 1)
        if kind == "list_value":
            items = value.list_value.values
            self._take(len(items), depth + 1)
            return [self.value(item, depth + 1) for item in items]
        if kind is None or kind == "null_value":
            return None
        return getattr(value, kind)


def _error(msg: Any) -> str | None:
    if not msg.HasField("error_detail"):
        return None
    detail = msg.error_detail
    if not detail.code and not detail.message:
        return None
    return str(detail.message or f"code {detail.code}")


def _check_count(count: int, limit: int | None, type_url: str) -> None:
    if limit is not None and count > limit:
        raise RequestLimitError(f"{count} resource names for {type_url} (limit {limit})")


def parse_sotw(raw: bytes, *, max_names: int | None = None) -> SotwRequest:
    """Parse a serialized ``DiscoveryRequest`` (raises ``DecodeError`` on garbage).

    With ``max_names``, more resource names than that raise :class:`RequestLimitError`
    before any Python value is built for them: grpc calls this on the event loop,
    and a 512 KiB request holds ~170,000 one-byte names.
    """
    msg = _SotwMessage.FromString(raw)
    _check_count(len(msg.resource_names), max_names, msg.type_url)
    return SotwRequest(
        type_url=msg.type_url,
        resource_names=tuple(msg.resource_names),
        version_info=msg.version_info,
        response_nonce=msg.response_nonce,
        error=_error(msg),
        node=msg.node or None,
    )


def parse_delta(raw: bytes, *, max_names: int | None = None) -> DeltaRequest:
    """Parse a serialized ``DeltaDiscoveryRequest``; ``max_names`` bounds the names it
    subscribes, unsubscribes and lists in ``initial_resource_versions``, together
    (as :func:`parse_sotw`'s)."""
    msg = _DeltaMessage.FromString(raw)
    entries = msg.initial_resource_versions
    count = len(msg.resource_names_subscribe) + len(msg.resource_names_unsubscribe)
    _check_count(count + len(entries), max_names, msg.type_url)
    return DeltaRequest(
        type_url=msg.type_url,
        subscribe=tuple(msg.resource_names_subscribe),
        unsubscribe=tuple(msg.resource_names_unsubscribe),
        initial_versions={e.key: e.value for e in entries},  # the last of a repeated key wins
        response_nonce=msg.response_nonce,
        error=_error(msg),
        node=msg.node or None,
    )
