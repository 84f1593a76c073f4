"""Record what a sidecar says about itself (its first request's ``Node``) in its state."""

from __future__ import annotations

from xds.ads.discovery_request import NodeInfo
from xds.ads.sidecars import Sidecar

__all__ = ["describe_node", "is_grpc_client"]


def describe_node(sidecar: Sidecar, node: NodeInfo) -> None:
    """Fill ``sidecar`` from ``node``: id, cluster, agent and version, metadata."""
    sidecar.node_id = node.id
    sidecar.cluster = node.cluster
    sidecar.envoy_version = node.user_agent
    sidecar.metadata = dict(node.metadata)


def is_grpc_client(node: NodeInfo | None) -> bool:
    """gRPC's own xDS client (proxyless) names itself ``gRPC <language>`` in the Node."""
    return node is not None and node.user_agent.lower().startswith("grpc")
