"""A sidecar's ``Node``: decoded once per distinct Node, within limits, then recorded.

Requests carry the Node as raw bytes (:mod:`xds.ads.discovery_request`).
:class:`NodeDecoder` turns them into a :class:`NodeInfo` only when it has not
seen those exact bytes recently (keyed by a hash), so a reconnect storm of
identical sidecars, or a client re-sending the same Node, costs one decode.
Size and metadata limits make even a new Node bounded work on the event loop
(~7 ms at most): that is why no decode needs a thread of its own.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from xds.ads.discovery_request import (
    DEFAULT_MAX_METADATA_DEPTH,
    DEFAULT_MAX_METADATA_VALUES,
    NodeInfo,
    NodeLimitError,
    decode_node,
)
from xds.ads.sidecars import Sidecar

__all__ = [
    "DEFAULT_MAX_NODE_BYTES",
    "NodeDecoder",
    "NodeLimitError",
    "describe_node",
    "is_grpc_client",
]

#: a serialized Node larger than this is refused; Envoy's own is ~61 KB
#: (``bench/fixtures/envoy-first-request.bin``, nearly all of it the extension list)
DEFAULT_MAX_NODE_BYTES = 262_144
#: decoded Nodes remembered (by hash); a hit costs one hash of the bytes
MEMO_SIZE = 256


class NodeDecoder:
    """Decodes serialized Nodes within limits, remembering the last :data:`MEMO_SIZE`."""

    def __init__(
        self,
        max_node_bytes: int = DEFAULT_MAX_NODE_BYTES,
        *,
        max_metadata_depth: int = DEFAULT_MAX_METADATA_DEPTH,
        max_metadata_values: int = DEFAULT_MAX_METADATA_VALUES,
    ) -> None:
        if max_node_bytes <= 0:
            raise ValueError(f"max_node_bytes must be > 0, got {max_node_bytes}")
        self.max_node_bytes = max_node_bytes
        self.max_metadata_depth = max_metadata_depth
        self.max_metadata_values = max_metadata_values
        self.conversions = 0  # Nodes actually decoded (memo misses), for tests and benches
        self._memo: OrderedDict[bytes, NodeInfo] = OrderedDict()

    def check_size(self, raw: bytes) -> None:
        """Raise :class:`NodeLimitError` if ``raw`` is over ``max_node_bytes`` (cheap)."""
        if len(raw) > self.max_node_bytes:
            raise NodeLimitError(
                f"node is {len(raw)} bytes serialized, over xds.max_node_bytes "
                f"({self.max_node_bytes})"
            )

    def decode(self, raw: bytes) -> NodeInfo:
        """The :class:`NodeInfo` for ``raw``; raises :class:`NodeLimitError` beyond a limit,
        ``DecodeError`` for bytes that are not a Node."""
        self.check_size(raw)
        key = hashlib.blake2b(raw, digest_size=16).digest()
        info = self._memo.get(key)
        if info is not None:
            self._memo.move_to_end(key)
            return info
        self.conversions += 1
        info = decode_node(
            raw, max_depth=self.max_metadata_depth, max_values=self.max_metadata_values
        )
        self._memo[key] = info
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return info


def describe_node(sidecar: Sidecar, node: NodeInfo) -> None:
    """Fill ``sidecar`` from ``node``: id, cluster, agent and version, metadata."""
    sidecar.node_id = node.id
    sidecar.cluster = node.cluster
    sidecar.envoy_version = node.user_agent
    sidecar.metadata = dict(node.metadata)


def is_grpc_client(node: NodeInfo | None) -> bool:
    """gRPC's own xDS client (proxyless) names itself ``gRPC <language>`` in the Node."""
    return node is not None and node.user_agent.lower().startswith("grpc")
