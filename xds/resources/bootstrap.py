"""Generate an Envoy sidecar bootstrap that gets everything else from sentinel-xds over ADS.

The bootstrap is the only static file a sidecar host needs: node identity,
admin on loopback, and one static cluster listing every control-plane replica
so that Envoy reconnects to a surviving one. Listeners, clusters and endpoints
all arrive over ADS.

Three things in it are about running many sidecars in production
(docs/deploy.md, "Sidecar metrics, reconnect and stats"):

* optionally a second listener that serves only ``/stats/prometheus``, so
  Prometheus can scrape the sidecar without reaching the admin API (which
  can stop Envoy with ``/quitquitquit`` and has no authentication);
* the ADS stream's reconnect back-off, capped low enough that a sidecar is
  back within about a second of a control-plane restart;
* a stats matcher that drops the two per-command latency histograms, which
  cost redis_proxy CPU on every command and which nothing here reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec

import yaml

from redis_sentinel_watch import Address

DEFAULT_ADMIN = Address("127.0.0.1", 9901)

P = ParamSpec("P")

__all__ = [
    "ADS_RETRY_BACK_OFF",
    "DEFAULT_ADMIN",
    "DROPPED_STATS",
    "METADATA_KEY",
    "PROMETHEUS_PATH",
    "STATS_ADMIN_CLUSTER",
    "STATS_LISTENER",
    "XDS_CLUSTER",
    "AdsMode",
    "XdsClientTls",
    "bootstrap_dict",
    "bootstrap_yaml",
    "stats_resources",
]

XDS_CLUSTER = "sentinel_xds"
#: top-level node metadata key holding our per-node settings, read by the control plane
#: (:mod:`xds.resources.profiles`)
METADATA_KEY = "sentinel_xds"

#: the ADS stream's reconnect back-off (Envoy's ``envoy_grpc.retry_policy``). Envoy
#: waits a uniformly random time below the current interval, which starts at the
#: base and doubles up to the cap, so after a long outage a sidecar retries every
#: 0.5 s on average: back within ~1 s of a control-plane restart, and about two
#: refused connects a second per sidecar while it stays down. Envoy's default (0.5 s
#: to 30 s) left a sidecar on the dead primary 7-24 s after a restart, a 5 s cap up
#: to 0.8 s more than this one (``python -m bench.sidecar_reconnect``)
ADS_RETRY_BACK_OFF: dict[str, str] = {"base_interval": "0.25s", "max_interval": "1s"}

#: Envoy stats the sidecar never creates (``stats_config.stats_matcher`` exclusions,
#: RE2 on the full stat name): the per-command latency histograms of redis_proxy,
#: downstream (``redis.<group>.command.<cmd>.latency``) and upstream
#: (``cluster.redis/<group>.redis_cluster.upstream_commands.upstream_rq_time``).
#: Recording them is a measurable share of redis_proxy's CPU per command; every
#: counter (``redis.<group>.command.<cmd>.total|success|error``, ``downstream_cx_*``,
#: ``cluster.*.upstream_*``) stays.
DROPPED_STATS: tuple[str, ...] = (
    r"^redis\..+\.command\..+\.latency$",
    r"^cluster\..+\.redis_cluster\.upstream_commands\.upstream_rq_time$",
)

#: the static listener of ``--stats-listen`` and the cluster it forwards to (the admin)
STATS_LISTENER = "sidecar_stats"
STATS_ADMIN_CLUSTER = "sidecar_admin"
#: the one admin path the stats listener forwards
PROMETHEUS_PATH = "/stats/prometheus"

_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "envoy.extensions.filters.http.router.v3.Router"

#: SotW (``GRPC``) or incremental (``DELTA_GRPC``) ADS; the control plane serves both
AdsMode = Literal["sotw", "delta"]
_API_TYPE: dict[str, str] = {"sotw": "GRPC", "delta": "DELTA_GRPC"}


def _socket(addr: Address) -> dict[str, Any]:
    return {"socket_address": {"address": addr.host, "port_value": addr.port}}


@dataclass(frozen=True)
class XdsClientTls:
    """How the sidecar speaks TLS to the control plane (``--tls-*``; paths on the sidecar host).

    ``ca_file`` verifies the control plane's certificate; ``cert_file`` and
    ``key_file`` are the sidecar's client certificate for mutual TLS; ``sni``
    is sent as the server name and the server certificate must carry it as a
    DNS subject alternative name. Without ``sni`` any certificate from
    ``ca_file`` is accepted, so use a CA that signs only control planes.
    """

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    sni: str | None = None

    def __post_init__(self) -> None:
        if not self.ca_file:
            raise ValueError("--tls-ca: a CA file is required for TLS to the control plane")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("--tls-cert and --tls-key must be given together")

    def transport_socket(self) -> dict[str, Any]:
        """The static xDS cluster's ``transport_socket`` (an UpstreamTlsContext)."""
        validation: dict[str, Any] = {"trusted_ca": {"filename": self.ca_file}}
        if self.sni:
            validation["match_typed_subject_alt_names"] = [
                {"san_type": "DNS", "matcher": {"exact": self.sni}}
            ]
        common: dict[str, Any] = {
            "alpn_protocols": ["h2"],  # gRPC servers expect HTTP/2 negotiated by ALPN
            "validation_context": validation,
        }
        if self.cert_file and self.key_file:
            common["tls_certificates"] = [
                {
                    "certificate_chain": {"filename": self.cert_file},
                    "private_key": {"filename": self.key_file},
                }
            ]
        context: dict[str, Any] = {
            "@type": "type.googleapis.com/"
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common,
        }
        if self.sni:
            context["sni"] = self.sni
        return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _loopback_for(admin: Address) -> Address:
    """Where the sidecar itself reaches its admin: a wildcard admin is reached on loopback."""
    if admin.is_wildcard:
        return Address("::1" if ":" in admin.host else "127.0.0.1", admin.port)
    return admin


def _clashes(a: Address, b: Address) -> bool:
    """True if two listeners on these addresses cannot both bind."""
    return a.port == b.port and (a.is_wildcard or b.is_wildcard or a.identity() == b.identity())


def _check_stats_listen(
    stats_listen: Address, admin: Address, listen: Mapping[str, Address]
) -> None:
    if not stats_listen.is_ip:
        raise ValueError(
            f"--stats-listen: {stats_listen.host!r} is a host name; Envoy listeners need an IP"
        )
    if stats_listen.port == 0:
        raise ValueError("--stats-listen: port 0 is not a port Prometheus can scrape")
    if _clashes(stats_listen, admin):
        raise ValueError(f"--stats-listen: {stats_listen} is the admin address ({admin})")
    for group, addr in sorted(listen.items()):
        if _clashes(stats_listen, addr):
            raise ValueError(f"--stats-listen: {stats_listen} is group {group}'s listener")


def stats_resources(stats_listen: Address, admin: Address) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``--stats-listen`` listener and the static cluster it forwards to (the admin).

    Only ``GET /stats/prometheus`` (any query string) is forwarded; every other
    path or method gets a 404 from Envoy itself and never reaches the admin
    API, whose other endpoints change or stop the sidecar (``/quitquitquit``,
    ``/drain_listeners``, ``/logging``) or show its whole config. The admin
    itself stays where ``admin`` says (loopback by default).
    """
    routes = [
        {
            "match": {
                "path": PROMETHEUS_PATH,  # exact, query string excluded, case-sensitive
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "route": {"cluster": STATS_ADMIN_CLUSTER, "timeout": "10s"},
        },
        {
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 404,
                "body": {"inline_string": f"only GET {PROMETHEUS_PATH} is served here\n"},
            },
        },
    ]
    hcm = {
        "@type": f"type.googleapis.com/{_HCM}",
        "stat_prefix": STATS_LISTENER,
        "normalize_path": True,  # /x/../quitquitquit is /quitquitquit, hence a 404
        "merge_slashes": True,
        "route_config": {
            "name": STATS_LISTENER,
            "virtual_hosts": [{"name": STATS_LISTENER, "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": f"type.googleapis.com/{_ROUTER}"},
            }
        ],
    }
    listener = {
        "name": STATS_LISTENER,
        "address": _socket(stats_listen),
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }
    target = _loopback_for(admin)
    cluster = {
        "name": STATS_ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": STATS_ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(target)}}]}],
        },
    }
    return listener, cluster


def bootstrap_dict(
    node_id: str,
    xds: Sequence[Address],
    *,
    node_cluster: str = "sentinel-xds-sidecar",
    admin: Address = DEFAULT_ADMIN,
    ads: AdsMode = "sotw",
    listen: Mapping[str, Address] | None = None,
    tls: XdsClientTls | None = None,
    stats_listen: Address | None = None,
) -> dict[str, Any]:
    """The bootstrap as a plain dict (ADS over gRPC, node sent on the first message only).

    ``listen`` overrides, for this sidecar only, where it accepts a group's
    clients (group → address); it travels in the node metadata, and the
    control plane builds this sidecar's Listener on it. That is how two
    sidecars share one host. ``tls`` makes the xDS connection TLS (mutual
    with a client certificate). ``stats_listen`` adds a listener serving only
    ``/stats/prometheus`` (:func:`stats_resources`).
    """
    if not node_id:
        raise ValueError("node id must not be empty")
    if not xds:
        raise ValueError("at least one xDS endpoint is required")
    if ads not in _API_TYPE:
        raise ValueError(f"ads must be one of {', '.join(_API_TYPE)}, got {ads!r}")
    if stats_listen is not None:
        _check_stats_listen(stats_listen, admin, listen or {})
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    static = all(a.is_ip for a in xds)
    node: dict[str, Any] = {"id": node_id, "cluster": node_cluster}
    if listen:
        node["metadata"] = {
            METADATA_KEY: {"listen": {group: str(addr) for group, addr in sorted(listen.items())}}
        }
    xds_cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # a frozen or partitioned replica keeps the stream open but
                        # silent: notice within ~8 s, then reconnect to another
                        # replica (docs/security.md, "Replicas")
                        "connection_keepalive": {"interval": "5s", "timeout": "3s"}
                    }
                },
            }
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in xds]}],
        },
    }
    if tls is not None:
        xds_cluster["transport_socket"] = tls.transport_socket()
    static_resources: dict[str, Any] = {"clusters": [xds_cluster]}
    if stats_listen is not None:
        stats_listener, admin_cluster = stats_resources(stats_listen, admin)
        static_resources = {
            "listeners": [stats_listener],
            "clusters": [xds_cluster, admin_cluster],
        }
    return {
        "node": node,
        "admin": {"address": _socket(admin)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": _API_TYPE[ads],
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {"retry_back_off": dict(ADS_RETRY_BACK_OFF)},
                        }
                    }
                ],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": static_resources,
        "stats_config": {
            "stats_matcher": {
                "exclusion_list": {
                    "patterns": [{"safe_regex": {"regex": r}} for r in DROPPED_STATS]
                }
            }
        },
    }


class _QuotingDumper(yaml.SafeDumper):
    """Quote strings that YAML 1.1 would read as something else.

    Envoy's YAML parser reads bare ``n``, ``y``, ``off`` … as booleans; a node
    id ``n`` would then fail as ``id: false``. PyYAML does not quote ``y``/``n``.
    """


_YAML11_NON_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _quoted_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    ambiguous = value.lower() in _YAML11_NON_STRINGS or value.replace(".", "", 1).isdigit()
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if ambiguous else None)


_QuotingDumper.add_representer(str, _quoted_str)


def _as_yaml(build: Callable[P, Mapping[str, Any]]) -> Callable[P, str]:
    """``build`` rendered as YAML, taking exactly ``build``'s parameters (ParamSpec),
    so the YAML form cannot drift from the dict form."""

    def bootstrap_yaml(*args: P.args, **kwargs: P.kwargs) -> str:
        """:func:`bootstrap_dict` rendered as YAML, with a header saying where it came from."""
        body = yaml.dump(dict(build(*args, **kwargs)), Dumper=_QuotingDumper, sort_keys=False)
        return "# Envoy sidecar bootstrap generated by `sentinel-xds bootstrap`.\n" + body

    return bootstrap_yaml


bootstrap_yaml = _as_yaml(bootstrap_dict)
