"""Resource builders, snapshot consistency and content-hash versions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import (
    RedisProtocolOptions,
    RedisProxy,
)
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

from redis_sentinel_watch import Address
from xds.ads.discovery_request import NodeInfo
from xds.ads.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    InconsistentSnapshotError,
    Snapshot,
)
from xds.ads.wire import sotw_body, sotw_response_bytes, varint
from xds.resources.profiles import Profiles, SidecarSelector
from xds.resources.redis_group import (
    REDIS_PROXY_FILTER,
    GroupSpec,
    PasswordFile,
    build_cluster,
    build_listener,
    build_load_assignment,
)
from xds.resources.snapshot import build_snapshot, snapshot_of

A = Address("127.0.0.1", 7001)
B = Address("127.0.0.1", 7002)
LISTEN = Address("127.0.0.1", 6379)


def spec(primary: Address | None = A) -> GroupSpec:
    return GroupSpec("mymaster", LISTEN, primary, op_timeout_ms=2500)


def test_listener_routes_everything_to_the_group_cluster() -> None:
    """The Listener binds the group's address and routes all commands to redis/<group>."""
    listener = build_listener(spec())
    assert listener.address.socket_address.port_value == 6379
    (chain,) = listener.filter_chains
    (flt,) = chain.filters
    assert flt.name == "envoy.filters.network.redis_proxy"
    proxy = flt.typed_config.unpack()
    assert isinstance(proxy, RedisProxy)
    assert proxy.prefix_routes.catch_all_route.cluster == "redis/mymaster"
    assert proxy.settings.op_timeout.total_seconds() == 2.5


def test_load_assignment_has_only_the_primary_with_locality_and_weights() -> None:
    """One endpoint, the primary, with locality and weights (gRPC's xDS client needs them)."""
    cla = build_load_assignment(spec())
    (locality,) = cla.endpoints
    assert locality.locality is not None and locality.load_balancing_weight == 1
    (ep,) = locality.lb_endpoints
    assert ep.endpoint.address.socket_address.port_value == 7001
    assert ep.load_balancing_weight == 1


def test_no_primary_gives_empty_assignment() -> None:
    """Without a primary the assignment has no endpoint (commands fail fast)."""
    assert build_load_assignment(spec(None)).endpoints == []


def test_failover_changes_cluster_but_not_listener() -> None:
    """A new primary changes the Cluster (so Envoy drops old upstream connections) and EDS,
    never the Listener (so clients keep their connection to the sidecar)."""
    one, two = build_snapshot([spec(A)]), build_snapshot([spec(B)])
    assert one.version(LISTENER) == two.version(LISTENER)
    assert one.version(CLUSTER) != two.version(CLUSTER)
    assert one.version(ENDPOINT) != two.version(ENDPOINT)
    assert build_cluster(spec(A)).name == build_cluster(spec(B)).name


def test_versions_are_content_hashes() -> None:
    """Same topology, same versions: a restarted or second control plane causes no churn."""
    assert build_snapshot([spec(A)]).versions == build_snapshot([spec(A)]).versions


def test_inconsistent_snapshot_rejected() -> None:
    """A cluster without its endpoints, or a listener without its cluster, is refused."""
    with pytest.raises(InconsistentSnapshotError, match="needs ClusterLoadAssignment"):
        Snapshot.of([], [build_cluster(spec())], []).consistent()
    with pytest.raises(InconsistentSnapshotError, match="missing cluster"):
        snapshot_of([build_listener(spec())], [], []).consistent()


def test_framed_response_parses_back() -> None:
    """Hand-framed DiscoveryResponse bytes parse with envoy-data-plane's own class."""
    snap = build_snapshot([spec()])
    res = snap.by_type[ENDPOINT]
    data = sotw_response_bytes(sotw_body(res.version, res.items.values(), ENDPOINT), "n7")
    resp = DiscoveryResponse.FromString(data)
    assert resp.version_info == res.version and resp.nonce == "n7"
    assert resp.type_url == ENDPOINT
    (any_,) = resp.resources
    cla = any_.unpack()
    assert isinstance(cla, ClusterLoadAssignment)
    assert cla.cluster_name == "redis/mymaster/127.0.0.1:7001"


def test_varint() -> None:
    """Protobuf varints, including multi-byte ones."""
    assert varint(1) == b"\x01"
    assert varint(300) == b"\xac\x02"


@dataclass(frozen=True)
class SidecarTarget:
    """A group every sidecar receives (what Profiles needs of a group's config)."""

    name: str
    sidecars: SidecarSelector | None = None
    upstream_auth: PasswordFile | None = None
    downstream_auth: PasswordFile | None = None


UP_FILE = PasswordFile("/etc/docker-registry/redis-upstream.pass", "app")
DOWN_FILE = PasswordFile("/etc/docker-registry/redis.pass")


def file_spec() -> GroupSpec:
    return GroupSpec("mymaster", LISTEN, A, upstream_auth=UP_FILE, downstream_auth=DOWN_FILE)


def test_password_files_become_filenames_and_no_inline_password() -> None:
    """A PasswordFile is sent as DataSource ``filename`` (Envoy reads it on its own host);
    only the username, which is no secret, is inline."""
    options = build_cluster(file_spec()).typed_extension_protocol_options[REDIS_PROXY_FILTER]
    upstream = options.unpack()
    assert isinstance(upstream, RedisProtocolOptions)
    assert upstream.auth_password.filename == UP_FILE.path
    assert upstream.auth_password.inline_string is None
    assert upstream.auth_password.inline_bytes is None
    assert upstream.auth_username.inline_string == "app"
    proxy = build_listener(file_spec()).filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(proxy, RedisProxy)
    (password,) = proxy.downstream_auth_passwords
    assert password.filename == DOWN_FILE.path
    assert password.inline_string is None and password.inline_bytes is None
    assert proxy.downstream_auth_username is None


def test_grpc_clients_get_neither_passwords_nor_password_file_paths() -> None:
    """gRPC's xDS client does not speak Redis: its snapshot names no password file."""
    profiles = Profiles([SidecarTarget("mymaster")])
    grpc = NodeInfo(id="g", cluster="c", user_agent="gRPC Python/1.85.3", metadata={})
    snap = profiles.snapshot(profiles.of(grpc), [file_spec()])
    plain = profiles.snapshot(None, [file_spec()])
    for type_url in (CLUSTER, LISTENER):
        assert b"redis.pass" not in b"".join(v for _, v in snap.by_type[type_url].select(None))
    assert b"redis-upstream.pass" in b"".join(v for _, v in plain.by_type[CLUSTER].select(None))
