"""Generate an Envoy sidecar bootstrap that gets everything else from sentinel-xds over ADS.

The bootstrap is the only static file a sidecar host needs: node identity,
admin on loopback, and one static cluster listing every control-plane replica
so that Envoy reconnects to a surviving one. Listeners, clusters and endpoints
all arrive over ADS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from redis_sentinel_watch import Address

DEFAULT_ADMIN = Address("127.0.0.1", 9901)

__all__ = [
    "DEFAULT_ADMIN",
    "METADATA_KEY",
    "XDS_CLUSTER",
    "AdsMode",
    "XdsClientTls",
    "bootstrap_dict",
    "bootstrap_yaml",
]

XDS_CLUSTER = "sentinel_xds"
#: node metadata key read by the control plane (xds.profiles): per-node settings
METADATA_KEY = "sentinel_xds"

#: SotW (``GRPC``) or incremental (``DELTA_GRPC``) ADS; the control plane serves both
AdsMode = Literal["sotw", "delta"]
_API_TYPE: dict[str, str] = {"sotw": "GRPC", "delta": "DELTA_GRPC"}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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


def bootstrap_dict(
    node_id: str,
    xds: Sequence[Address],
    *,
    node_cluster: str = "sentinel-xds-sidecar",
    admin: Address = DEFAULT_ADMIN,
    ads: AdsMode = "sotw",
    listen: Mapping[str, Address] | None = None,
    tls: XdsClientTls | None = None,
) -> dict[str, Any]:
    """The bootstrap as a plain dict (ADS over gRPC, node sent on the first message only).

    ``listen`` overrides, for this sidecar only, where it accepts a group's
    clients (group → address); it travels in the node metadata, and the
    control plane builds this sidecar's Listener on it. That is how two
    sidecars share one host. ``tls`` makes the xDS connection TLS (mutual
    with a client certificate).
    """
    if not node_id:
        raise ValueError("node id must not be empty")
    if not xds:
        raise ValueError("at least one xDS endpoint is required")
    if ads not in _API_TYPE:
        raise ValueError(f"ads must be one of {', '.join(_API_TYPE)}, got {ads!r}")
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    static = all(_is_ip(a.host) for a in xds)
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
                            # reconnect quickly after a control-plane restart (default caps at 30s)
                            "retry_policy": {
                                "retry_back_off": {"base_interval": "0.25s", "max_interval": "5s"}
                            },
                        }
                    }
                ],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {"clusters": [xds_cluster]},
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


def bootstrap_yaml(
    node_id: str,
    xds: Sequence[Address],
    *,
    node_cluster: str = "sentinel-xds-sidecar",
    admin: Address = DEFAULT_ADMIN,
    ads: AdsMode = "sotw",
    listen: Mapping[str, Address] | None = None,
    tls: XdsClientTls | None = None,
) -> str:
    """:func:`bootstrap_dict` rendered as YAML, with a header saying where it came from."""
    body = yaml.dump(
        bootstrap_dict(
            node_id, xds, node_cluster=node_cluster, admin=admin, ads=ads, listen=listen, tls=tls
        ),
        Dumper=_QuotingDumper,
        sort_keys=False,
    )
    return "# Envoy sidecar bootstrap generated by `sentinel-xds bootstrap`.\n" + body
