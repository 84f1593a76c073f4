"""Read what a sidecar says about itself in its first request's ``Node``."""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.core.v3 import Node

from .sidecars import Sidecar

__all__ = ["describe_node", "node_metadata"]


def node_metadata(node: Node) -> dict[str, Any]:
    """The node's metadata Struct as plain Python values (empty if unset)."""
    if node.metadata is None:
        return {}
    data = node.metadata.to_dict()
    return data if isinstance(data, dict) else {}


def describe_node(sidecar: Sidecar, node: Node) -> None:
    """Fill ``sidecar`` from ``node``: id, cluster, agent and version, metadata."""
    sidecar.node_id = node.id
    sidecar.cluster = node.cluster
    version = ""
    build = node.user_agent_build_version
    if build is not None and build.version is not None:
        v = build.version
        version = f"{v.major_number}.{v.minor_number}.{v.patch}"
    elif node.user_agent_version:
        version = node.user_agent_version
    agent = node.user_agent_name or "unknown"
    sidecar.envoy_version = f"{agent}/{version}" if version else agent
    sidecar.metadata = node_metadata(node)
