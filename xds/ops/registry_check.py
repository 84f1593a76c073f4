"""Check a docker-registry config for use behind the sentinel-xds sidecar.

A registry (distribution 2.x) configured for a Redis node keeps "working" when
pointed at the sidecar the wrong way: the registry swallows cache errors, so a
wrong ``db``, a password the sidecar does not expect or an address that is not
a sidecar listener only shows up as a silently disabled cache; a ``health.tcp``
check still aimed at a Redis node turns every request into a 503 at the next
failover, which is the outage this project exists to remove. None of that is
visible until it hurts, so ``sentinel-xds check-client-config`` reads the file
and says, one line per problem, what is wrong.

What was observed with Envoy 1.40's redis_proxy and distribution 2.8.2, and why
each rule exists:

* the registry sends ``SELECT <db>`` on every new connection when ``db`` is not
  0; Envoy answers OK and switches its *shared* upstream connection, so every
  client of that sidecar lands in that db, and the next upstream connection
  (after a failover) is back on db 0 without the registry knowing;
* with ``redis.password`` the registry sends ``AUTH`` on connect; a sidecar
  without downstream auth answers ``ERR Client sent AUTH, but no password is
  set``, the registry drops the connection and runs without its cache;
* a failing ``health.tcp`` check makes the registry answer 503 to every request;
  the sidecar's listener stays up through Redis failovers and maintenance, a
  Redis node's port does not.

:func:`check_registry_config` is pure (parsed YAML and the sidecar listeners in,
findings out); :func:`load_registry_config` and :func:`load_yaml_mapping` read the
files, and every unreadable input is a :class:`ClientConfigError` (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from redis_sentinel_watch.model import Address, AddressError
from xds.resources.bootstrap import METADATA_KEY
from xds.service.config import Config, GroupConfig

__all__ = [
    "ClientConfigError",
    "Finding",
    "SidecarListener",
    "bootstrap_listen_overrides",
    "check_registry_config",
    "listeners_from_config",
    "load_registry_config",
    "load_yaml_mapping",
]

#: The port Redis uses unless told otherwise; a health check aimed at it (and not
#: at a sidecar listener) is almost certainly aimed at a Redis node.
REDIS_DEFAULT_PORT = 6379


class ClientConfigError(Exception):
    """The registry config cannot be read or is not a registry config at all (exit 2)."""


@dataclass(frozen=True)
class Finding:
    """One problem: the dotted field in the registry config and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class SidecarListener:
    """Where a sidecar accepts Redis clients for one group, and whether it wants AUTH."""

    group: str
    listen: Address
    requires_auth: bool = False


def _group_requires_auth(group: GroupConfig) -> bool:
    """Whether the sidecars of ``group`` require clients to AUTH (redis_proxy downstream auth).

    The control-plane config has no downstream-auth setting yet (``redis_auth`` is
    what the control plane itself uses towards Redis nodes), so no sidecar asks
    clients for AUTH today; when such a setting is added, read it here.
    """
    del group
    return False


def listeners_from_config(
    config: Config, overrides: Mapping[str, Address] | None = None
) -> tuple[SidecarListener, ...]:
    """The sidecar listeners of one sidecar of this control plane, one per group.

    A sidecar listens where the group's ``listen`` says, unless its bootstrap
    overrides it (``sentinel-xds bootstrap --listen GROUP=HOST:PORT``, e.g. two
    sidecars on one host): pass those ``overrides`` (group → address).
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {g.name for g in config.groups})
    if unknown:
        raise ClientConfigError(
            f"the bootstrap overrides group {unknown[0]!r}, which is not in the control-plane "
            f"config (groups: {', '.join(g.name for g in config.groups)})"
        )
    return tuple(
        SidecarListener(
            group=g.name,
            listen=overrides.get(g.name, g.listen),
            requires_auth=_group_requires_auth(g),
        )
        for g in config.groups
    )


def bootstrap_listen_overrides(data: Mapping[str, Any]) -> dict[str, Address]:
    """Per-group listen overrides from a sidecar bootstrap's node metadata.

    ``sentinel-xds bootstrap --listen GROUP=HOST:PORT`` writes them as
    ``node.metadata.sentinel_xds.listen: {GROUP: "HOST:PORT"}``; the control plane
    builds that sidecar's listeners from them.
    """
    listen = _section(data, f"node.metadata.{METADATA_KEY}.listen")
    out: dict[str, Address] = {}
    for group, raw in listen.items():
        addr = _parse_addr(raw)
        if addr is None:
            raise ClientConfigError(
                f"node.metadata.{METADATA_KEY}.listen.{group}: {raw!r} is not 'host:port'"
            )
        out[str(group)] = addr
    return out


def load_yaml_mapping(path: str | os.PathLike[str], what: str) -> Mapping[str, Any]:
    """Read a YAML file that must hold a mapping; ClientConfigError for anything unreadable.

    Messages do not repeat the file name: the caller prefixes it.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as fh:
            text = fh.read()
    except OSError as exc:
        raise ClientConfigError(f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ClientConfigError(f"cannot read it: not valid UTF-8 ({exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ClientConfigError(f"invalid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else type(data).__name__
        raise ClientConfigError(f"expected {what} (a YAML mapping), got {got}")
    return data


def load_registry_config(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Read and parse a docker-registry config file (see :func:`load_yaml_mapping`)."""
    return load_yaml_mapping(path, "a docker-registry config")


# --------------------------------------------------------------------------- helpers


def _section(data: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """The mapping at a dotted ``path`` ({} when absent); ClientConfigError if not a mapping."""
    node: Mapping[str, Any] = data
    walked: list[str] = []
    for key in path.split("."):
        walked.append(key)
        child = node.get(key)
        if child is None:
            return {}
        if not isinstance(child, Mapping):
            raise ClientConfigError(
                f"{'.'.join(walked)}: expected a mapping, got {type(child).__name__}"
            )
        node = child
    return node


def _same_endpoint(addr: Address, listen: Address) -> bool:
    """Whether a client dialling ``addr`` reaches a listener bound to ``listen``."""
    if addr.port != listen.port:
        return False
    return listen.is_wildcard or addr.same_endpoint(listen)


def _parse_addr(value: object) -> Address | None:
    if not isinstance(value, str):
        return None
    try:
        return Address.parse(value)
    except AddressError:
        return None


def _listeners_text(listeners: Sequence[SidecarListener]) -> str:
    return ", ".join(f"{lst.group} {lst.listen}" for lst in listeners)


# --------------------------------------------------------------------------- checks


def _check_cache(data: Mapping[str, Any]) -> list[Finding]:
    cache = _section(data, "storage.cache")
    kind = cache.get("blobdescriptor")
    if kind == "redis":
        return []
    shown = "not set" if kind is None else f"{kind!r}"
    return [
        Finding(
            "storage.cache.blobdescriptor",
            f"is {shown}, not 'redis': the registry does not keep its blob-descriptor cache "
            "in Redis, so it never uses the sidecar",
        )
    ]


def _check_addr(
    redis: Mapping[str, Any], listeners: Sequence[SidecarListener] | None
) -> tuple[list[Finding], Address | None, SidecarListener | None]:
    """Check ``redis.addr``; return findings, the parsed address and the matching listener."""
    raw = redis.get("addr")
    if raw is None or raw == "":
        return (
            [
                Finding(
                    "redis.addr",
                    "not set: the registry runs without Redis; set it to the sidecar's "
                    "listener (e.g. 127.0.0.1:6379)",
                )
            ],
            None,
            None,
        )
    addr = _parse_addr(raw)
    if addr is None:
        return [Finding("redis.addr", f"{raw!r} is not 'host:port'")], None, None
    if listeners is None:
        if addr.is_loopback:
            return [], addr, None
        return (
            [
                Finding(
                    "redis.addr",
                    f"{addr} is not on this host: the sidecar listens on loopback, so this is "
                    "probably a Redis node (pass --config to check against the sidecar "
                    "listeners)",
                )
            ],
            addr,
            None,
        )
    for listener in listeners:
        if _same_endpoint(addr, listener.listen):
            return [], addr, listener
    return (
        [
            Finding(
                "redis.addr",
                f"{addr} is not a sidecar listener; the sidecar listens on: "
                f"{_listeners_text(listeners)}",
            )
        ],
        addr,
        None,
    )


def _check_db(redis: Mapping[str, Any]) -> list[Finding]:
    db = redis.get("db", 0)
    if db is None or (isinstance(db, int) and not isinstance(db, bool) and db == 0):
        return []
    if isinstance(db, bool) or not isinstance(db, int):
        return [Finding("redis.db", f"expected an integer, got {db!r}; use 0")]
    return [
        Finding(
            "redis.db",
            f"is {db}; behind the sidecar only db 0 works: the registry's SELECT {db} switches "
            "the sidecar's shared upstream connection for every client, and after a failover "
            "the new upstream connection is back on db 0 without the registry knowing",
        )
    ]


def _check_auth(redis: Mapping[str, Any], listener: SidecarListener | None) -> list[Finding]:
    password = redis.get("password")
    has_password = password not in (None, "")
    if listener is None:
        if has_password:
            return [
                Finding(
                    "redis.password",
                    "is set, but no sidecar listener is known to require AUTH: a sidecar "
                    "without downstream auth answers the registry's AUTH with an error and the "
                    "registry runs without its cache",
                )
            ]
        return []
    if has_password and not listener.requires_auth:
        return [
            Finding(
                "redis.password",
                f"is set, but the sidecar for group {listener.group} has no downstream auth: "
                "it answers the registry's AUTH with 'ERR Client sent AUTH, but no password "
                "is set', and the registry drops every connection and runs without its cache",
            )
        ]
    if not has_password and listener.requires_auth:
        return [
            Finding(
                "redis.password",
                f"is not set, but the sidecar for group {listener.group} requires AUTH: every "
                "cache command gets NOAUTH and the registry runs without its cache",
            )
        ]
    return []


def _health_entries(data: Mapping[str, Any]) -> list[tuple[int, Any]]:
    health = _section(data, "health")
    tcp = health.get("tcp")
    if tcp is None:
        return []
    if not isinstance(tcp, list):
        raise ClientConfigError(f"health.tcp: expected a list, got {type(tcp).__name__}")
    return list(enumerate(tcp))


def _check_health(
    data: Mapping[str, Any],
    addr: Address | None,
    listener: SidecarListener | None,
    listeners: Sequence[SidecarListener] | None,
) -> list[Finding]:
    """Every ``health.tcp`` check must spare Redis nodes, and one must test the sidecar."""
    if listeners is not None:
        sidecars = [lst.listen for lst in listeners]
    else:
        sidecars = [addr] if addr is not None and addr.is_loopback else []
    redis_ports = {REDIS_DEFAULT_PORT, *(s.port for s in sidecars)}
    if addr is not None:
        redis_ports.add(addr.port)
    if listener is not None:
        sidecar_text = str(listener.listen)
    elif sidecars:
        sidecar_text = ", ".join(str(s) for s in sidecars)
    else:
        sidecar_text = "the sidecar's listener"

    findings: list[Finding] = []
    checks_sidecar = False
    for i, entry in _health_entries(data):
        field = f"health.tcp[{i}].addr"
        raw = entry.get("addr") if isinstance(entry, Mapping) else None
        target = _parse_addr(raw)
        if target is None:
            findings.append(Finding(field, f"{raw!r} is not 'host:port'"))
        elif any(_same_endpoint(target, s) for s in sidecars):
            checks_sidecar = True
        elif target.port in redis_ports:
            findings.append(
                Finding(
                    field,
                    f"{target} looks like a Redis node, not the sidecar ({sidecar_text}): "
                    "when that node fails over or is drained the check fails and the "
                    "registry answers 503 to every request",
                )
            )
    if not checks_sidecar:
        findings.append(
            Finding(
                "health.tcp",
                f"no check aimed at the sidecar ({sidecar_text}): add one so that a registry "
                "whose sidecar is down leaves the load balancer; it stays green through "
                "Redis failovers because the sidecar's listener does",
            )
        )
    return findings


def check_registry_config(
    data: Mapping[str, Any], listeners: Sequence[SidecarListener] | None = None
) -> list[Finding]:
    """Everything wrong with a parsed registry config for use behind the sidecar.

    ``listeners`` are the sidecar listeners from the control-plane config; without
    them, ``redis.addr`` only has to be on loopback (a sidecar always is). Raises
    ClientConfigError when a section has the wrong shape (not a registry config).
    """
    findings = _check_cache(data)
    redis = _section(data, "redis")
    addr_findings, addr, listener = _check_addr(redis, listeners)
    findings += addr_findings
    findings += _check_db(redis)
    findings += _check_auth(redis, listener)
    findings += _check_health(data, addr, listener, listeners)
    return findings
