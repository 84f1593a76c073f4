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
    DataSource,
    Locality,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import ApiListener, Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import (
    RedisProtocolOptions,
    RedisProxy,
    RedisProxyConnPoolSettings,
    RedisProxyPrefixRoutes,
    RedisProxyPrefixRoutesRoute,
)
from envoy_data_plane.google.protobuf import Any

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Credentials

__all__ = [
    "GroupSpec",
    "build_api_listener",
    "build_cluster",
    "build_group",
    "build_listener",
    "build_load_assignment",
    "cluster_name",
    "eds_service_name",
    "listener_name",
]

REDIS_PROXY_FILTER = "envoy.filters.network.redis_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
NO_PRIMARY = "no-primary"


#: redis_proxy's per-command timeout unless a group sets ``op_timeout_ms``
DEFAULT_OP_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class PasswordFile:
    """AUTH whose password Envoy reads from a file on the sidecar's own host.

    Only the path travels over xDS (Envoy's DataSource ``filename``), so a client
    that reads the control plane's resources learns no password. The file comes
    from wherever the application's own Redis password comes from (docs/deploy.md).

    Envoy 1.40 uses the file's bytes as they are (a trailing newline is part of
    the password), reads a downstream file once when it builds the Listener and
    an upstream file at every new upstream connection; a missing file is a
    Listener NACK naming the path, but an upstream file that disappears while
    the sidecar runs makes Envoy abort at its next upstream connection. Hence
    files are replaced atomically, never deleted (measured in
    tests/integration/test_sidecar_password_files.py; docs/deploy.md).
    """

    path: str
    username: str | None = None
    #: (node cluster, path) pairs: sidecars of that cluster keep the file elsewhere.
    #: The builders ignore it; :mod:`xds.resources.profiles` picks the path per node.
    by_cluster: tuple[tuple[str, str], ...] = ()

    def for_cluster(self, cluster: str) -> str:
        """The path a sidecar of node cluster ``cluster`` reads."""
        return dict(self.by_cluster).get(cluster, self.path)


#: how a sidecar learns a password: inline over xDS, or from a file on its host
SidecarAuth = Credentials | PasswordFile


@dataclass(frozen=True)
class GroupSpec:
    """Everything the builders need for one master group (config plus current primary)."""

    name: str
    listen: Address
    primary: Address | None
    op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS
    connect_timeout_ms: int = 1000
    upstream_auth: SidecarAuth | None = None  # AUTH the sidecar sends to Redis
    downstream_auth: SidecarAuth | None = None  # AUTH the sidecar requires from clients


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


def _inline(value: str) -> DataSource:
    return DataSource(inline_string=value)


def _password_source(auth: SidecarAuth) -> DataSource:
    """Where Envoy finds the password: a path on its own host, or the value inline."""
    if isinstance(auth, PasswordFile):
        return DataSource(filename=auth.path)
    return _inline(auth.password.reveal())


def build_cluster(spec: GroupSpec) -> Cluster:
    """An EDS cluster fed over ADS whose identity includes the current primary.

    With ``upstream_auth`` the cluster carries redis_proxy protocol options, so
    Envoy sends ``AUTH [user] password`` on every upstream connection. With a
    :class:`PasswordFile` only its path is in the resource. With inline
    :class:`Credentials` the password travels in the xDS stream (config allows
    it only with mutual TLS, see ``docs/security.md``) and goes into the
    resource's content-hash version, a truncated SHA-256 that does not reveal it.
    """
    cluster = Cluster(
        name=cluster_name(spec.name),
        type=ClusterDiscoveryType.EDS,
        connect_timeout=datetime.timedelta(milliseconds=spec.connect_timeout_ms),
        eds_cluster_config=ClusterEdsClusterConfig(
            eds_config=_ads(), service_name=eds_service_name(spec.name, spec.primary)
        ),
    )
    auth = spec.upstream_auth
    if auth is not None:
        options = RedisProtocolOptions(auth_password=_password_source(auth))
        if auth.username:
            options.auth_username = _inline(auth.username)
        cluster.typed_extension_protocol_options = {REDIS_PROXY_FILTER: Any.pack(options)}
    return cluster


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
    auth = spec.downstream_auth
    if auth is not None:  # clients must AUTH at the sidecar (Envoy answers it itself)
        proxy.downstream_auth_passwords = [_password_source(auth)]
        if auth.username:
            proxy.downstream_auth_username = _inline(auth.username)
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


def build_api_listener(spec: GroupSpec) -> Listener:
    """What gRPC's own xDS client (``xds:///<group>``) starts from: an API listener.

    gRPC resolves a target by fetching the Listener named like the target,
    which must hold an HttpConnectionManager; its route (inline here, so no
    RDS round trip) points at the group's Cluster, and from there CDS and EDS
    are the same resources Envoy sidecars get. Served only to nodes that
    identify as gRPC clients: Envoy rejects API listeners over LDS.
    """
    route = RouteConfiguration(
        name=f"{spec.name}-route",
        virtual_hosts=[
            VirtualHost(
                name=spec.name,
                domains=["*"],
                routes=[
                    Route(
                        match=RouteMatch(prefix=""),
                        route=RouteAction(cluster=cluster_name(spec.name)),
                    )
                ],
            )
        ],
    )
    hcm = HttpConnectionManager(
        stat_prefix=spec.name,
        route_config=route,
        http_filters=[HttpFilter(name=ROUTER_FILTER, typed_config=Any.pack(Router()))],
    )
    return Listener(name=spec.name, api_listener=ApiListener(api_listener=Any.pack(hcm)))
