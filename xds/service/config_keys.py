"""Every config key, declared once: kind (type and bounds), default and a one-line doc.

Validation (:func:`xds.service.config_schema.read_section`), the error messages
and ``docs/config.md`` (``python -m xds.service.config_doc``) all come from
these declarations, and the dataclasses in :mod:`xds.service.config` take their
defaults from here. Protocol defaults live with the protocol (:mod:`xds.ads`)
and are imported, not repeated. Rules that span keys (the admin port against
the xDS port, inline passwords only with client certificates, ...) are in
:mod:`xds.service.config`.
"""

from __future__ import annotations

import socket
from typing import Any

from redis_sentinel_watch.model import Address
from xds.ads.limits import DEFAULT_FIRST_REQUEST_TIMEOUT_S, DEFAULT_MAX_STREAMS_PER_PEER
from xds.ads.node import DEFAULT_MAX_NODE_BYTES
from xds.ads.server import DEFAULT_MAX_STREAMS
from xds.resources.redis_group import DEFAULT_OP_TIMEOUT_MS
from xds.service.config_schema import (
    REQUIRED,
    Bool,
    Choice,
    ConfigError,
    Custom,
    EnvName,
    FilePath,
    HostPort,
    Int,
    Key,
    Number,
    Section,
    Sub,
    UserName,
    read_section,
    type_name,
)

__all__ = ["DEFAULT_ADMIN_LISTEN", "GROUP", "LOG", "SIDECAR_AUTH", "TOP", "WATCH", "XDS"]

DEFAULT_ADMIN_LISTEN = Address("127.0.0.1", 9102)
MAX_MAX_STREAMS = 1_000_000
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

# Characters that may not appear in a group name: they separate parts of xDS
# resource names ('@', '/') or would make the name unusable as a Redis key.
_FORBIDDEN_NAME_CHARS = frozenset("@/")

_INLINE = "inline passwords are not accepted; use 'password_file' or 'password_env'"


# --------------------------------------------------------------------------- lists and maps


def _sentinels(value: object, path: str) -> tuple[Address, ...]:
    """The Sentinels, each once: two spellings of one endpoint (``localhost`` and
    ``127.0.0.1``, ``::ffff:127.0.0.1``, two host names of one address) would count
    one Sentinel twice toward the majority."""
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of 'host:port' strings, got {type_name(value)}")
    if not value:
        raise ConfigError(path, "must list at least one Sentinel")
    result: list[Address] = []
    seen: dict[tuple[str, int], int] = {}
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        addr = HostPort().parse(item, where)
        for key in _endpoint_keys(addr):
            if key in seen:
                first = result[seen[key]]
                spelled = "" if first == addr else f", spelled {addr}"
                raise ConfigError(where, f"duplicate of {path}[{seen[key]}] ({first}){spelled}")
        for key in _endpoint_keys(addr):
            seen[key] = i
        result.append(addr)
    return tuple(result)


def _endpoint_keys(addr: Address) -> set[tuple[str, int]]:
    """Every identity of ``addr``: its spelling's (:meth:`Address.identity`) and, for a
    host name, each address it resolves to now (the watcher connects to those). A name
    that does not resolve keeps its spelling's identity: the watcher reports such a
    Sentinel unreachable, and validation must not depend on DNS being up."""
    keys = {addr.identity()}
    if addr.is_ip or addr.identity()[0] == "127.0.0.1":
        return keys
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return keys
    for info in infos:
        keys.add(Address(str(info[4][0]), addr.port).identity())
    return keys


def _group_name(name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError("groups", f"group name must be a string, got {type_name(name)} {name!r}")
    if not name:
        raise ConfigError("groups", "group name must not be empty")
    for ch in name:
        if ch.isspace() or not ch.isprintable() or ch in _FORBIDDEN_NAME_CHARS:
            raise ConfigError(
                "groups",
                f"group name {name!r} contains {ch!r}; names may not contain whitespace, "
                "control characters, '@' or '/'",
            )
    return name


def _groups(value: object, path: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, settings) per group in file order; no two groups on one port."""
    if not isinstance(value, dict):
        raise ConfigError(
            path, f"expected a mapping of group name to group settings, got {type_name(value)}"
        )
    if not value:
        raise ConfigError(path, "must define at least one group")
    result: list[tuple[str, dict[str, Any]]] = []
    ports: dict[int, str] = {}
    for raw_name, body in value.items():
        name = _group_name(raw_name)
        settings = read_section(body, f"{path}.{name}", GROUP)
        where = f"{path}.{name}.listen"
        port = settings["listen"].port
        if port in ports:
            raise ConfigError(where, f"port {port} is already used by {ports[port]}")
        ports[port] = where
        result.append((name, settings))
    return result


def _clusters(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(
            path, f"expected a non-empty list of node cluster names, got {type_name(value)}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{path}[{i}]", f"expected a non-empty string, got {type_name(item)}")
    return tuple(value)


def _metadata(value: object, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a mapping of key to value, got {type_name(value)}")
    if not value:
        raise ConfigError(path, "must name at least one key")
    metadata: list[tuple[str, str]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(path, f"keys must be strings, got {key!r}")
        if not isinstance(item, str | int):  # bool is an int: true/false
            raise ConfigError(
                f"{path}.{key}", f"expected a string or number, got {type_name(item)}"
            )
        metadata.append(
            (key, ("true" if item else "false") if isinstance(item, bool) else str(item))
        )
    return tuple(metadata)


_SIDECAR_FILE = FilePath(absolute=True, what="path on the sidecar's host")


def _files_by_cluster(value: object, path: str) -> tuple[tuple[str, str], ...]:
    """(node cluster, path) pairs in file order: where each cluster's sidecars keep it."""
    if not isinstance(value, dict):
        raise ConfigError(
            path, f"expected a mapping of node cluster to absolute path, got {type_name(value)}"
        )
    if not value:
        raise ConfigError(path, "must name at least one node cluster")
    out: list[tuple[str, str]] = []
    for cluster, item in value.items():
        if not isinstance(cluster, str) or not cluster:
            raise ConfigError(
                path, f"node cluster names must be non-empty strings, got {cluster!r}"
            )
        out.append((cluster, _SIDECAR_FILE.parse(item, f"{path}.{cluster}")))
    return tuple(out)


# --------------------------------------------------------------------------- sections

_PASSWORD_FILE = Key(
    "password_file",
    FilePath(),
    "file holding the password, read by the control plane (0600, at most 4 KiB, 8+ characters)",
)
_PASSWORD_ENV = Key(
    "password_env", EnvName(), "environment variable holding the password (8+ characters)"
)

AUTH = Section(
    "sentinel_auth, redis_auth",
    "AUTH the control plane sends to the Sentinels (`sentinel_auth`) and to the Redis "
    "nodes for ROLE and the fence (`redis_auth`). Exactly one of `password_file`, "
    "`password_env`.",
    (
        Key("username", UserName(), "ACL user; omit for the default user (requirepass)"),
        _PASSWORD_FILE,
        _PASSWORD_ENV,
    ),
    refused={"password": _INLINE},
)

SIDECAR_AUTH = Section(
    "groups.<name>.upstream_auth, downstream_auth",
    "AUTH the sidecar sends to Redis (`upstream_auth`) or demands from its clients "
    "(`downstream_auth`). Exactly one of `sidecar_password_file` (recommended: only the "
    "path travels over xDS) or an inline password (`password_file`, `password_env`: the "
    "value travels over xDS, so only with `xds.tls.require_client_cert`).",
    (
        Key("username", UserName(), "ACL user; omit for the default user (requirepass)"),
        Key(
            "sidecar_password_file",
            _SIDECAR_FILE,
            "file the sidecar's Envoy reads the password from; the control plane never reads it",
        ),
        Key(
            "sidecar_password_file_by_cluster",
            Custom(_files_by_cluster, "mapping of node cluster to absolute path"),
            "where sidecars of these node clusters (bootstrap `--node-cluster`) keep that file "
            "instead; others use `sidecar_password_file`",
        ),
        _PASSWORD_FILE,
        _PASSWORD_ENV,
    ),
    refused={"password": _INLINE},
)

SIDECARS = Section(
    "groups.<name>.sidecars",
    "Which sidecars receive the group (all of them without this section); at least one key.",
    (
        Key(
            "clusters",
            Custom(_clusters, "list of node cluster names"),
            "the node's cluster (bootstrap `--node-cluster`) is one of these",
        ),
        Key(
            "metadata",
            Custom(_metadata, "mapping of key to string or number"),
            "the node's top-level metadata has these values",
        ),
    ),
)

GROUP = Section(
    "groups.<name>",
    "One Sentinel master group (the key is its Sentinel name) and where sidecars serve it.",
    (
        Key(
            "listen",
            HostPort(ip_only=True),
            "where every sidecar accepts Redis clients for this group",
            REQUIRED,
        ),
        Key(
            "op_timeout_ms",
            Int(1, 600_000, "ms"),
            "redis_proxy per-command timeout",
            DEFAULT_OP_TIMEOUT_MS,
        ),
        Key("sidecars", Sub(SIDECARS), "only sidecars matching this receive the group"),
        Key("upstream_auth", Sub(SIDECAR_AUTH), "AUTH the sidecar sends to Redis"),
        Key("downstream_auth", Sub(SIDECAR_AUTH), "AUTH the sidecar demands from its clients"),
    ),
)

XDS_TLS = Section(
    "xds.tls",
    "TLS on the xDS listener; with `client_ca_file`, mutual TLS (docs/security.md).",
    (
        Key("cert_file", FilePath(readable=True), "server certificate chain (PEM)", REQUIRED),
        Key("key_file", FilePath(readable=True), "its private key (PEM)", REQUIRED),
        Key(
            "client_ca_file",
            FilePath(readable=True),
            "CA that sidecars' client certificates must chain to",
        ),
        Key(
            "require_client_cert",
            Bool(),
            "refuse clients without a certificate from client_ca_file",
            default_text="true when client_ca_file is given",
        ),
    ),
)

XDS = Section(
    "xds",
    "The gRPC ADS server the sidecars connect to (SotW and Delta).",
    (
        Key("listen", HostPort(), "address of the ADS endpoint", REQUIRED),
        Key(
            "max_streams",
            Int(1, MAX_MAX_STREAMS),
            "more open streams than this are refused (RESOURCE_EXHAUSTED)",
            DEFAULT_MAX_STREAMS,
        ),
        Key(
            "max_streams_per_peer",
            Int(1, MAX_MAX_STREAMS),
            "open streams from one peer address, at most max_streams",
            default_text=f"{DEFAULT_MAX_STREAMS_PER_PEER} (max_streams if lower)",
        ),
        Key(
            "first_request_timeout_s",
            Number("seconds", 0.1, 300.0, low_inclusive=True),
            "a stream that sends no request within this is closed",
            DEFAULT_FIRST_REQUEST_TIMEOUT_S,
        ),
        Key(
            "max_node_bytes",
            Int(1024, 4 * 1024 * 1024, "bytes"),
            "largest Node a request may carry; a whole request may be this + 256 KiB "
            "(INVALID_ARGUMENT beyond either, refused before parsing)",
            DEFAULT_MAX_NODE_BYTES,
        ),
        Key(
            "max_requests_per_second",
            Number("requests per second", 0.0, 100_000.0),
            "per stream; requests beyond it are delayed",
            100.0,
        ),
        Key("tls", Sub(XDS_TLS), "TLS or mutual TLS; plaintext without it"),
    ),
)

ADMIN = Section(
    "admin",
    "The admin HTTP API: /healthz, /readyz, /metrics for anyone; /status, /events and "
    "writes for operators.",
    (
        Key(
            "listen",
            HostPort(),
            "address of the admin API; beyond loopback it needs token_file",
            DEFAULT_ADMIN_LISTEN,
        ),
        Key(
            "token_file",
            FilePath(),
            "bearer token for the operator endpoints (0600, at most 4 KiB, 16+ characters)",
        ),
    ),
)

WATCH = Section(
    "watch",
    "How the Sentinels are polled and how a failover is followed (docs/sentinel.md).",
    (
        Key(
            "poll_interval_s",
            Number("seconds", 0.0, 60.0),
            "every Sentinel is polled this often (faster during a failover)",
            1.0,
        ),
        Key(
            "sentinel_timeout_s", Number("seconds", 0.0, 30.0), "timeout of one Sentinel call", 0.5
        ),
        Key("role_check", Bool(), "publish a primary only after its own ROLE says master", True),
        Key(
            "react_on_promotion",
            Bool(),
            "switch once the replica the failover leader selected says master",
            True,
        ),
        Key(
            "promotion_probe_interval_s",
            Number("seconds", 0.0, 1.0),
            "how often that replica's ROLE is asked",
            0.02,
        ),
        Key(
            "fence_pause_ms",
            Int(0, 60_000, "ms"),
            "CLIENT PAUSE WRITE on the replaced primary (at most half of down-after); 0 = off",
            2000,
        ),
    ),
)

LOG = Section(
    "log",
    "Log rendering and threshold.",
    (
        Key("format", Choice(LOG_FORMATS), "`auto` is JSON unless stdout is a terminal", "auto"),
        Key("level", Choice(LOG_LEVELS), "lowest level logged", "info"),
    ),
)

TLS = Section(
    "tls",
    "TLS to the Sentinels and Redis nodes.",
    (
        Key("ca_file", FilePath(readable=True), "CA for the servers' certificates (system CAs)"),
        Key("cert_file", FilePath(readable=True), "client certificate, with key_file"),
        Key("key_file", FilePath(readable=True), "its private key, with cert_file"),
        Key("verify", Bool(), "check the servers' certificates (false: testing only)", True),
    ),
)

TOP = Section(
    "top level",
    "The file is a YAML mapping with these keys.",
    (
        Key(
            "sentinels",
            Custom(_sentinels, "list of `host:port`, each Sentinel once"),
            "the Sentinels to watch",
            REQUIRED,
        ),
        Key(
            "groups",
            Custom(_groups, "mapping of group name to group", (GROUP,)),
            "the master groups; names may not contain whitespace, '@' or '/'",
            REQUIRED,
        ),
        Key("xds", Sub(XDS), "the ADS server", REQUIRED),
        Key("admin", Sub(ADMIN), "the admin API", {}),
        Key("watch", Sub(WATCH), "Sentinel polling", {}),
        Key("log", Sub(LOG), "logging", {}),
        Key("sentinel_auth", Sub(AUTH), "AUTH to the Sentinels"),
        Key("redis_auth", Sub(AUTH), "AUTH to the Redis nodes (ROLE, fence)"),
        Key("tls", Sub(TLS), "TLS to Sentinels and Redis nodes"),
    ),
    top=True,
)
