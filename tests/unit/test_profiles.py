"""Per-node profiles: which groups a sidecar receives and where it listens.

Covers the config keys (``groups.X.sidecars``, ``xds.max_streams``), the node →
profile rule, the snapshots built per profile, and the bootstrap flags that put
the per-node settings into the Node.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import (
    RedisProtocolOptions,
    RedisProxy,
)

from redis_sentinel_watch import Address
from xds.ads.discovery_request import NodeInfo
from xds.ads.snapshot import CLUSTER, LISTENER
from xds.resources.bootstrap import bootstrap_dict
from xds.resources.profiles import Profile, Profiles, SidecarSelector
from xds.resources.redis_group import REDIS_PROXY_FILTER, GroupSpec
from xds.service.config import ConfigError, parse_config

BASE: dict[str, Any] = {
    "sentinels": ["127.0.0.1:26379"],
    "xds": {"listen": "127.0.0.1:18000"},
}


def config(groups: dict[str, Any], xds: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return parse_config({**BASE, "groups": groups, **({"xds": xds} if xds else {})})


def node(cluster: str = "app", agent: str = "envoy/1.40.0", **metadata: Any) -> NodeInfo:
    return NodeInfo(id="n", cluster=cluster, user_agent=agent, metadata=metadata)


def test_sidecars_selector_parsed() -> None:
    """``sidecars: {clusters, metadata}`` is read; metadata values are compared as text."""
    cfg = config(
        {
            "a": {
                "listen": "127.0.0.1:6379",
                "sidecars": {"clusters": ["registry"], "metadata": {"team": "infra", "tier": 1}},
            }
        }
    )
    assert cfg.groups[0].sidecars == SidecarSelector(
        clusters=("registry",), metadata=(("team", "infra"), ("tier", "1"))
    )


@pytest.mark.parametrize(
    ("sidecars", "field"),
    [
        ({}, "groups.a.sidecars"),
        ({"clusters": []}, "groups.a.sidecars.clusters"),
        ({"clusters": ["ok", ""]}, "groups.a.sidecars.clusters[1]"),
        ({"metadata": {"k": ["list"]}}, "groups.a.sidecars.metadata.k"),
        ({"metadata": {}}, "groups.a.sidecars.metadata"),
        ({"cluster": ["x"]}, "groups.a.sidecars.cluster"),
    ],
)
def test_sidecars_selector_errors_name_the_field(sidecars: Any, field: str) -> None:
    """Each invalid selector is refused with the dotted path of the bad field."""
    with pytest.raises(ConfigError) as err:
        config({"a": {"listen": "127.0.0.1:6379", "sidecars": sidecars}})
    assert err.value.field == field


def test_max_streams() -> None:
    """``xds.max_streams`` defaults to 5000, accepts a positive int and names itself when bad."""
    assert config({"a": {"listen": "127.0.0.1:6379"}}).xds_max_streams == 5000
    cfg = config({"a": {"listen": "127.0.0.1:6379"}}, {"listen": "127.0.0.1:1", "max_streams": 3})
    assert cfg.xds_max_streams == 3
    with pytest.raises(ConfigError) as err:
        config({"a": {"listen": "127.0.0.1:6379"}}, {"listen": "127.0.0.1:1", "max_streams": 0})
    assert err.value.field == "xds.max_streams"


GROUPS = {
    "open": {"listen": "127.0.0.1:6379"},
    "registry": {"listen": "127.0.0.1:6380", "sidecars": {"clusters": ["registry"]}},
    "infra": {"listen": "127.0.0.1:6381", "sidecars": {"metadata": {"team": "infra"}}},
}


def test_plain_node_has_the_default_profile() -> None:
    """A node that matches every group, overrides nothing and is Envoy gets ``None``."""
    profiles = Profiles(config({"open": {"listen": "127.0.0.1:6379"}}).groups)
    assert profiles.of(node()) is None


def test_groups_restricted_by_cluster_and_metadata() -> None:
    """Restricted groups go only to matching nodes; others get the unrestricted ones."""
    profiles = Profiles(config(GROUPS).groups)
    assert profiles.of(node("web")) == Profile(("open",))
    assert profiles.of(node("registry")) == Profile(("open", "registry"))
    assert profiles.of(node("web", team="infra")) == Profile(("open", "infra"))
    assert profiles.of(None) == Profile(("open",))


def test_listen_override_from_metadata() -> None:
    """``sentinel_xds.listen.GROUP`` moves that group's listener for this node only;
    overrides of unknown groups or with bad addresses are ignored."""
    profiles = Profiles(config(GROUPS).groups)
    meta = {"listen": {"open": "127.0.0.1:16379", "nope": "127.0.0.1:1", "registry": "bad"}}
    profile = profiles.of(node("registry", sentinel_xds=meta))
    assert profile == Profile(("open", "registry"), (("open", Address("127.0.0.1", 16379)),))
    specs = [
        GroupSpec("open", Address("127.0.0.1", 6379), Address("10.0.0.1", 7000)),
        GroupSpec("registry", Address("127.0.0.1", 6380), Address("10.0.0.2", 7000)),
        GroupSpec("infra", Address("127.0.0.1", 6381), Address("10.0.0.3", 7000)),
    ]
    snap = profiles.snapshot(profile, specs)
    ports = {n: lst.address.socket_address.port_value for n, lst in snap.listeners.items()}
    assert ports == {"redis/open": 16379, "redis/registry": 6380}
    again = Profiles(config(GROUPS).groups).snapshot(profile, specs)
    assert again.versions == snap.versions  # content hashes: replicas agree


def test_grpc_client_profile_gets_api_listeners() -> None:
    """A node that identifies as gRPC gets an API listener per group, besides the rest."""
    profiles = Profiles(config({"open": {"listen": "127.0.0.1:6379"}}).groups)
    profile = profiles.of(node(agent="gRPC Python/1.85.3"))
    assert profile == Profile(("open",), (), True)
    specs = [GroupSpec("open", Address("127.0.0.1", 6379), Address("10.0.0.1", 7000))]
    snap = profiles.snapshot(profile, specs)
    assert sorted(snap.listeners) == ["open", "redis/open"]
    assert snap.listeners["open"].api_listener is not None
    assert list(snap.by_type[CLUSTER].items) == ["redis/open"]
    assert snap.version(LISTENER) != profiles.snapshot(None, specs).version(LISTENER)


def test_bootstrap_flags() -> None:
    """``--ads delta`` selects DELTA_GRPC; ``--listen`` lands in the node metadata."""
    boot = bootstrap_dict(
        "n",
        [Address("127.0.0.1", 18000)],
        ads="delta",
        listen={"mymaster": Address("127.0.0.1", 16379)},
    )
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert boot["node"]["metadata"] == {"sentinel_xds": {"listen": {"mymaster": "127.0.0.1:16379"}}}
    plain = bootstrap_dict("n", [Address("127.0.0.1", 18000)])
    assert plain["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"
    assert "metadata" not in plain["node"]


FILES = {
    "files": {
        "listen": "127.0.0.1:6379",
        "upstream_auth": {
            "username": "app",
            "sidecar_password_file": "/etc/redis-client/app.pass",
            "sidecar_password_file_by_cluster": {
                "docker-registry": "/etc/docker-registry/redis.pass",
                "harbor": "/etc/harbor/redis.pass",
            },
        },
        "downstream_auth": {
            "sidecar_password_file": "/etc/redis-client/clients.pass",
            "sidecar_password_file_by_cluster": {"harbor": "/etc/harbor/clients.pass"},
        },
    }
}


def _file_specs() -> list[GroupSpec]:
    return [
        GroupSpec(
            g.name,
            g.listen,
            Address("10.0.0.1", 7000),
            upstream_auth=g.upstream_auth,
            downstream_auth=g.downstream_auth,
        )
        for g in config(FILES).groups
    ]


def _password_paths(profiles: Profiles, profile: Profile | None) -> tuple[str, str, str | None]:
    """(upstream path, downstream path, upstream user) in the snapshot a profile gets."""
    snap = profiles.snapshot(profile, _file_specs())
    cluster = snap.clusters["redis/files"]
    options = cluster.typed_extension_protocol_options[REDIS_PROXY_FILTER].unpack()
    assert isinstance(options, RedisProtocolOptions)
    proxy = snap.listeners["redis/files"].filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(proxy, RedisProxy)
    (down,) = proxy.downstream_auth_passwords
    user = options.auth_username.inline_string if options.auth_username else None
    return options.auth_password.filename, down.filename, user


def test_password_file_paths_per_node_cluster() -> None:
    """Sidecars of different node clusters read the password files from their own
    paths (Cluster and Listener); an unlisted cluster gets the defaults, and nodes of
    one cluster share one profile, so one snapshot."""
    profiles = Profiles(config(FILES).groups)
    registry = profiles.of(node("docker-registry"))
    harbor = profiles.of(node("harbor"))
    assert registry == Profile(
        ("files",), upstream_files=(("files", "/etc/docker-registry/redis.pass"),)
    )
    assert _password_paths(profiles, registry) == (
        "/etc/docker-registry/redis.pass",
        "/etc/redis-client/clients.pass",
        "app",
    )
    assert _password_paths(profiles, harbor) == (
        "/etc/harbor/redis.pass",
        "/etc/harbor/clients.pass",
        "app",
    )
    assert profiles.of(node("web")) is None  # the plain snapshot: the default paths
    assert _password_paths(profiles, None) == (
        "/etc/redis-client/app.pass",
        "/etc/redis-client/clients.pass",
        "app",
    )
    other = NodeInfo(id="other", cluster="harbor", user_agent="envoy/1.40.0", metadata={})
    assert profiles.of(other) == harbor


def test_grpc_clients_get_no_per_cluster_password_paths() -> None:
    """A gRPC client of a listed cluster gets the same password-free profile as any
    other gRPC client."""
    profiles = Profiles(config(FILES).groups)
    grpc = profiles.of(node("harbor", agent="gRPC Python/1.85.3"))
    assert grpc == Profile(("files",), (), True)
    snap = profiles.snapshot(grpc, _file_specs())
    for type_url in (CLUSTER, LISTENER):
        assert b".pass" not in b"".join(v for _, v in snap.by_type[type_url].select(None))
