"""Pure builders: topology → Envoy Listener, Cluster and ClusterLoadAssignment.

No I/O and no state: the same topology always gives the same messages, and so
the same bytes and versions, whichever control-plane replica builds them.

The failover mechanism lives here. The Cluster's EDS ``service_name`` embeds
the primary's address (``redis/<group>/<host:port>``). When the primary
changes, the Cluster resource itself changes, so Envoy replaces the cluster:
it warms the new one (make-before-break: it asks for the new
ClusterLoadAssignment first), then tears down the old one, closing every
upstream connection of the old cluster. Requests still in flight to the old
primary fail visibly (the client sees an error, never a late OK that Sentinel
will then discard), while the client's own connection to the sidecar stays
open because the Listener does not change. Changing only the endpoint was
measured to let a request sent to a frozen old primary complete when it woke
up, which is exactly the lost-acknowledged-write case we exist to prevent.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterDiscoveryType,
    ClusterEdsClusterConfig,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address as EnvoyAddress,
)
from envoy_data_plane.envoy.config.core.v3 import (
    AggregatedConfigSource,
    ApiVersion,
    ConfigSource,
    Locality,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import (
    RedisProxy,
    RedisProxyConnPoolSettings,
    RedisProxyPrefixRoutes,
    RedisProxyPrefixRoutesRoute,
)
from envoy_data_plane.google.protobuf import Any

from redis_sentinel_watch import Address

__all__ = [
    "GroupSpec",
    "build_cluster",
    "build_group",
    "build_listener",
    "build_load_assignment",
    "cluster_name",
    "eds_service_name",
    "listener_name",
]

REDIS_PROXY_FILTER = "envoy.filters.network.redis_proxy"
NO_PRIMARY = "no-primary"


@dataclass(frozen=True)
class GroupSpec:
    """Everything the builders need for one master group (config plus current primary)."""

    name: str
    listen: Address
    primary: Address | None
    op_timeout_ms: int = 5000
    connect_timeout_ms: int = 1000


def cluster_name(group: str) -> str:
    """Stable Cluster name the Listener routes to; never changes across failovers."""
    return f"redis/{group}"


def listener_name(group: str) -> str:
    return f"redis/{group}"


def eds_service_name(group: str, primary: Address | None) -> str:
    """EDS name that changes with the primary; see the module docstring for why."""
    return f"redis/{group}/{primary if primary is not None else NO_PRIMARY}"


def _socket(addr: Address) -> EnvoyAddress:
    return EnvoyAddress(socket_address=SocketAddress(address=addr.host, port_value=addr.port))


def _ads() -> ConfigSource:
    return ConfigSource(ads=AggregatedConfigSource(), resource_api_version=ApiVersion.V3)


def build_cluster(spec: GroupSpec) -> Cluster:
    """An EDS cluster fed over ADS whose identity includes the current primary."""
    return Cluster(
        name=cluster_name(spec.name),
        type=ClusterDiscoveryType.EDS,
        connect_timeout=datetime.timedelta(milliseconds=spec.connect_timeout_ms),
        eds_cluster_config=ClusterEdsClusterConfig(
            eds_config=_ads(), service_name=eds_service_name(spec.name, spec.primary)
        ),
    )


def build_load_assignment(spec: GroupSpec) -> ClusterLoadAssignment:
    """Exactly one endpoint, the primary, in one locality with weights set.

    Weights and a locality are not needed by Envoy but are by gRPC's own xDS
    client, which rejects an endpoint without a locality weight.
    """
    endpoints: list[LocalityLbEndpoints] = []
    if spec.primary is not None:
        endpoints.append(
            LocalityLbEndpoints(
                locality=Locality(region="sentinel-xds", zone=spec.name),
                lb_endpoints=[
                    LbEndpoint(
                        endpoint=Endpoint(address=_socket(spec.primary)),
                        load_balancing_weight=1,
                    )
                ],
                load_balancing_weight=1,
            )
        )
    return ClusterLoadAssignment(
        cluster_name=eds_service_name(spec.name, spec.primary), endpoints=endpoints
    )


def build_listener(spec: GroupSpec) -> Listener:
    """The sidecar's Redis listener. Independent of the primary, so failovers never
    touch it and clients keep their connections."""
    proxy = RedisProxy(
        stat_prefix=spec.name,
        settings=RedisProxyConnPoolSettings(
            op_timeout=datetime.timedelta(milliseconds=spec.op_timeout_ms)
        ),
        prefix_routes=RedisProxyPrefixRoutes(
            catch_all_route=RedisProxyPrefixRoutesRoute(cluster=cluster_name(spec.name))
        ),
    )
    return Listener(
        name=listener_name(spec.name),
        address=_socket(spec.listen),
        filter_chains=[
            FilterChain(filters=[Filter(name=REDIS_PROXY_FILTER, typed_config=Any.pack(proxy))])
        ],
    )


def build_group(spec: GroupSpec) -> tuple[Listener, Cluster, ClusterLoadAssignment]:
    """All three resources of one group."""
    return build_listener(spec), build_cluster(spec), build_load_assignment(spec)
