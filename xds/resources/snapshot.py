"""Redis groups → one consistent :class:`~xds.ads.snapshot.Snapshot`.

The protocol's snapshot only checks references it is told about; this module
knows the redis_proxy filter, so it is the one that reads each Listener's
prefix routes and declares them (:func:`redis_routes`). A snapshot built here
therefore fails :meth:`~xds.ads.snapshot.Snapshot.consistent` when a
redis_proxy route names a Cluster the snapshot lacks.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import RedisProxy

from xds.ads.snapshot import Snapshot
from xds.resources.redis_group import GroupSpec, build_api_listener, build_group

__all__ = ["build_snapshot", "redis_routes", "snapshot_of"]


def redis_routes(listener: Listener) -> tuple[str, ...]:
    """Every cluster a Listener's redis_proxy filters route to (prefix and catch-all)."""
    out: list[str] = []
    for chain in listener.filter_chains:
        for flt in chain.filters:
            if flt.typed_config is None:
                continue
            proxy = flt.typed_config.unpack()
            if not isinstance(proxy, RedisProxy) or proxy.prefix_routes is None:
                continue
            out.extend(route.cluster for route in proxy.prefix_routes.routes)
            if proxy.prefix_routes.catch_all_route is not None:
                out.append(proxy.prefix_routes.catch_all_route.cluster)
    return tuple(out)


def snapshot_of(
    listeners: Iterable[Listener],
    clusters: Iterable[Cluster],
    endpoints: Iterable[ClusterLoadAssignment],
) -> Snapshot:
    """:meth:`Snapshot.of` with every Listener's redis_proxy routes declared."""
    ls = list(listeners)
    return Snapshot.of(ls, clusters, endpoints, {x.name: redis_routes(x) for x in ls})


def build_snapshot(specs: Iterable[GroupSpec], *, api_listeners: bool = False) -> Snapshot:
    """Pure: group specs (config + current primaries) → a consistent snapshot.

    ``api_listeners`` adds, per group, the Listener gRPC's xDS client asks for
    (see :func:`xds.resources.redis_group.build_api_listener`).
    """
    listeners, clusters, endpoints = [], [], []
    for spec in specs:
        listener, cluster, cla = build_group(spec)
        listeners.append(listener)
        clusters.append(cluster)
        endpoints.append(cla)
        if api_listeners:
            listeners.append(build_api_listener(spec))
    snap = snapshot_of(listeners, clusters, endpoints)
    snap.consistent()
    return snap
