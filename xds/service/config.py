"""Load and validate the sentinel-xds configuration file.

Every key, its bounds, default and meaning is declared once in
:mod:`xds.service.config_keys`; ``docs/config.md`` is generated from there
(``python -m xds.service.config_doc``) and ``envoy/sentinel-xds.yaml`` is a
commented example. This module holds the typed result (:class:`Config` and its
parts), the rules that span several keys, and reading the file and the secrets.

Every problem is reported as a single :class:`ConfigError` that names the
offending field with a dotted path (``groups.mymaster.listen``,
``sentinels[1]``) and says what was expected. Validation stops at the first
problem; nothing in here lets a traceback escape for bad input.

Secrets are read last, after every other check passed, and only when asked
(``resolve_secrets``): ``status`` and ``events`` need the admin address, not
the Redis passwords, and must work in a shell without them
(:class:`~xds.service.secrets.UnresolvedSecret` then stands in and refuses to
be revealed).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal, cast

import yaml
import yaml.constructor
import yaml.nodes
import yaml.reader

from redis_sentinel_watch.auth import Credentials, Secret, TlsSettings
from redis_sentinel_watch.model import Address
from xds.ads.limits import DEFAULT_MAX_STREAMS_PER_PEER
from xds.resources.profiles import SidecarSelector
from xds.resources.redis_group import PasswordFile, SidecarAuth
from xds.service import config_keys as keys
from xds.service.admin_auth import exposure_error
from xds.service.config_keys import DEFAULT_ADMIN_LISTEN
from xds.service.config_schema import ConfigError, read_section
from xds.service.secrets import (
    MAX_CONFIG_FILE_BYTES,
    MIN_TOKEN_LENGTH,
    UnresolvedSecret,
    UnsafeFile,
    read_regular_file,
    read_secret_file,
    too_short,
)
from xds.service.tls import ServerTls, check_server_tls

__all__ = [
    "DEFAULT_ADMIN_LISTEN",
    "Config",
    "ConfigError",
    "GroupConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "SidecarSelector",
    "WatchConfig",
    "load_config",
    "load_config_text",
    "parse_config",
]

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

_G, _W, _L, _X = keys.GROUP, keys.WATCH, keys.LOG, keys.XDS


@dataclass(frozen=True)
class GroupConfig:
    """One Sentinel master group and where sidecars accept its Redis clients."""

    name: str
    listen: Address
    op_timeout_ms: int = _G["op_timeout_ms"].default
    sidecars: SidecarSelector | None = None  # None: every sidecar receives the group
    # what the sidecar sends to Redis; a PasswordFile unless xDS requires client certs
    upstream_auth: SidecarAuth | None = None
    # what clients must AUTH with at the sidecar (redis_proxy downstream auth)
    downstream_auth: SidecarAuth | None = None


@dataclass(frozen=True)
class WatchConfig:
    """How the Sentinels are polled."""

    poll_interval_s: float = _W["poll_interval_s"].default
    sentinel_timeout_s: float = _W["sentinel_timeout_s"].default
    role_check: bool = _W["role_check"].default
    react_on_promotion: bool = _W["react_on_promotion"].default
    promotion_probe_interval_s: float = _W["promotion_probe_interval_s"].default
    fence_pause_ms: int = _W["fence_pause_ms"].default


@dataclass(frozen=True)
class LogConfig:
    """Log rendering (``auto`` is JSON unless stdout is a TTY) and threshold."""

    format: LogFormat = _L["format"].default
    level: LogLevel = _L["level"].default


@dataclass(frozen=True)
class Config:
    """The whole validated configuration (field ``x_y`` is the file's ``x.y``)."""

    sentinels: tuple[Address, ...]
    groups: tuple[GroupConfig, ...]
    xds_listen: Address
    admin_listen: Address = DEFAULT_ADMIN_LISTEN
    watch: WatchConfig = WatchConfig()
    log: LogConfig = LogConfig()
    xds_max_streams: int = _X["max_streams"].default
    sentinel_auth: Credentials | None = None
    redis_auth: Credentials | None = None
    tls: TlsSettings | None = None
    xds_tls: ServerTls | None = None
    xds_max_requests_per_second: float = _X["max_requests_per_second"].default
    xds_max_streams_per_peer: int = DEFAULT_MAX_STREAMS_PER_PEER
    xds_first_request_timeout_s: float = _X["first_request_timeout_s"].default
    xds_max_node_bytes: int = _X["max_node_bytes"].default
    admin_token_file: str | None = None
    #: read from admin_token_file; None without one, or when secrets were not resolved
    admin_token: Secret | None = None

    def group(self, name: str) -> GroupConfig | None:
        """The group called ``name``, or None."""
        for g in self.groups:
            if g.name == name:
                return g
        return None


# --------------------------------------------------------------------------- secrets


def _secret_file(name: str, path: str, minimum: int | None = None) -> Secret:
    try:
        return read_secret_file(name) if minimum is None else read_secret_file(name, minimum)
    except UnsafeFile as exc:
        raise ConfigError(path, f"cannot use {name!r}: {exc}") from None


def _password(d: dict[str, Any], path: str, resolve: bool) -> Secret:
    """The password named by ``password_file`` or ``password_env``, read now (or a
    stand-in when not resolving). The value itself never appears in a message."""
    if d["password_file"] is not None:
        return (
            _secret_file(d["password_file"], f"{path}.password_file")
            if resolve
            else (UnresolvedSecret())
        )
    if not resolve:
        return UnresolvedSecret()
    var, field = d["password_env"], f"{path}.password_env"
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(field, f"environment variable {var!r} is not set or empty")
    problem = too_short(value)
    if problem:
        raise ConfigError(field, f"environment variable {var!r}: {problem}")
    return Secret(value)


def _exactly_one(d: dict[str, Any], path: str, names: tuple[str, ...]) -> str:
    given = [n for n in names if d.get(n) is not None]
    if len(given) != 1:
        choices = [repr(n) for n in names]
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise ConfigError(path, f"give exactly one of {listed}")
    return given[0]


def _auth(d: dict[str, Any] | None, path: str, resolve: bool) -> Credentials | None:
    if d is None:
        return None
    _exactly_one(d, path, ("password_file", "password_env"))
    return Credentials(password=_password(d, path, resolve), username=d["username"])


def _sidecar_auth(
    d: dict[str, Any] | None, path: str, mtls: bool, resolve: bool
) -> SidecarAuth | None:
    """A file on the sidecar's host (only its path travels over xDS), or an inline
    password, which every client of the xDS port is sent: only with client certificates."""
    if d is None:
        return None
    which = _exactly_one(d, path, ("sidecar_password_file", "password_file", "password_env"))
    by_cluster = d["sidecar_password_file_by_cluster"]
    if which == "sidecar_password_file":
        return PasswordFile(d["sidecar_password_file"], d["username"], by_cluster or ())
    if by_cluster is not None:
        raise ConfigError(
            f"{path}.sidecar_password_file_by_cluster",
            "overrides sidecar_password_file, which is not given",
        )
    if not mtls:
        raise ConfigError(
            f"{path}.{which}",
            "inline sidecar passwords travel over xDS; require client certificates "
            "(xds.tls.require_client_cert) or use sidecar_password_file",
        )
    return Credentials(password=_password(d, path, resolve), username=d["username"])


# --------------------------------------------------------------------------- sections


def _xds_tls(d: dict[str, Any] | None) -> ServerTls | None:
    """``xds.tls``: server certificate and key, and for mutual TLS the clients' CA."""
    if d is None:
        return None
    path, ca = "xds.tls", d["client_ca_file"]
    require = d["require_client_cert"] if d["require_client_cert"] is not None else ca is not None
    if require and ca is None:
        raise ConfigError(f"{path}.client_ca_file", "required when require_client_cert is true")
    if ca is not None and not require:
        raise ConfigError(
            f"{path}.require_client_cert",
            "false leaves client_ca_file unused (gRPC then asks for no client certificate); "
            "drop client_ca_file or set require_client_cert: true",
        )
    tls = ServerTls(d["cert_file"], d["key_file"], client_ca_file=ca, require_client_cert=require)
    problem = check_server_tls(tls)
    if problem is not None:
        raise ConfigError(f"{path}.{problem.field}", problem.message)
    return tls


def _tls(d: dict[str, Any] | None) -> TlsSettings | None:
    if d is None:
        return None
    if (d["cert_file"] is None) != (d["key_file"] is None):
        missing = "key_file" if d["key_file"] is None else "cert_file"
        raise ConfigError(f"tls.{missing}", "cert_file and key_file must be given together")
    return TlsSettings(d["ca_file"], d["cert_file"], d["key_file"], d["verify"])


def _sidecars(d: dict[str, Any] | None, path: str) -> SidecarSelector | None:
    if d is None:
        return None
    if d["clusters"] is None and d["metadata"] is None:
        raise ConfigError(path, "give 'clusters' and/or 'metadata' (or drop 'sidecars')")
    return SidecarSelector(clusters=d["clusters"] or (), metadata=d["metadata"] or ())


def _group(name: str, d: dict[str, Any], mtls: bool, resolve: bool) -> GroupConfig:
    path = f"groups.{name}"
    return GroupConfig(
        name=name,
        listen=d["listen"],
        op_timeout_ms=d["op_timeout_ms"],
        sidecars=_sidecars(d["sidecars"], f"{path}.sidecars"),
        upstream_auth=_sidecar_auth(d["upstream_auth"], f"{path}.upstream_auth", mtls, resolve),
        downstream_auth=_sidecar_auth(
            d["downstream_auth"], f"{path}.downstream_auth", mtls, resolve
        ),
    )


def _check_admin(admin: dict[str, Any], xds_listen: Address) -> Address:
    """The admin listener may not share the xDS port, and beyond loopback it serves the
    operator endpoints (topology, drain notices) only behind a token."""
    listen: Address = admin["listen"]
    overlapping = (
        listen.identity()[0] == xds_listen.identity()[0]
        or listen.is_wildcard
        or xds_listen.is_wildcard
    )
    if listen.port == xds_listen.port and overlapping:
        which = " (the default)" if listen == DEFAULT_ADMIN_LISTEN else ""
        raise ConfigError(
            "admin.listen",
            f"{listen}{which} conflicts with xds.listen ({xds_listen}); "
            "they must use different ports",
        )
    refused = exposure_error(listen, admin["token_file"])
    if refused is not None:
        raise ConfigError("admin.listen", refused)
    return listen


# --------------------------------------------------------------------------- entry points


def parse_config(data: object, *, resolve_secrets: bool = True) -> Config:
    """Validate an already-parsed YAML value and build a :class:`Config`.

    Raises :class:`ConfigError` for the first problem found. With ``resolve_secrets``
    false no password or token is read (see the module docstring).
    """
    if data is None:
        names = ", ".join(keys.TOP.names())
        raise ConfigError("", f"config is empty; expected a mapping with keys: {names}")
    top = read_section(data, "", keys.TOP)
    xds = top["xds"]
    xds_tls = _xds_tls(xds["tls"])
    mtls = xds_tls is not None and xds_tls.require_client_cert
    per_peer = xds["max_streams_per_peer"]
    if per_peer is None:  # the default never exceeds the global cap
        per_peer = min(DEFAULT_MAX_STREAMS_PER_PEER, xds["max_streams"])
    elif per_peer > xds["max_streams"]:
        raise ConfigError(
            "xds.max_streams_per_peer",
            f"must be between 1 and {xds['max_streams']} (xds.max_streams), got {per_peer}",
        )
    admin = top["admin"]
    admin_listen = _check_admin(admin, xds["listen"])
    groups = tuple(_group(name, d, mtls, resolve_secrets) for name, d in top["groups"])
    token = None
    if admin["token_file"] is not None and resolve_secrets:
        token = _secret_file(admin["token_file"], "admin.token_file", MIN_TOKEN_LENGTH)
    watch, log = top["watch"], top["log"]
    return Config(
        sentinels=top["sentinels"],
        groups=groups,
        xds_listen=xds["listen"],
        xds_max_streams=xds["max_streams"],
        xds_max_streams_per_peer=per_peer,
        xds_first_request_timeout_s=xds["first_request_timeout_s"],
        xds_max_node_bytes=xds["max_node_bytes"],
        xds_max_requests_per_second=xds["max_requests_per_second"],
        xds_tls=xds_tls,
        admin_listen=admin_listen,
        admin_token_file=admin["token_file"],
        admin_token=token,
        watch=WatchConfig(**watch),
        log=LogConfig(format=cast(LogFormat, log["format"]), level=cast(LogLevel, log["level"])),
        sentinel_auth=_auth(top["sentinel_auth"], "sentinel_auth", resolve_secrets),
        redis_auth=_auth(top["redis_auth"], "redis_auth", resolve_secrets),
        tls=_tls(top["tls"]),
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping (PyYAML silently keeps the last)."""

    def construct_mapping(
        self, node: yaml.nodes.MappingNode, deep: bool = False
    ) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys with a position
            try:
                duplicate = key in seen
            except TypeError:  # a "hashable" container holding something unhashable
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "syntax error"
        return ConfigError(
            "",
            f"{source}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}",
        )
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        return ConfigError(
            "",
            f"{source}: invalid YAML: unacceptable character #x{exc.character:04x} "
            f"at position {exc.position}",
        )
    return ConfigError("", f"{source}: invalid YAML: {exc}")


def load_config_text(
    text: str, source: str = "<string>", *, resolve_secrets: bool = True
) -> Config:
    """Parse YAML ``text`` and validate it; ``source`` names it in YAML error messages."""
    try:
        data: object = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    except RecursionError:
        raise ConfigError("", f"{source}: invalid YAML: nested too deeply") from None
    return parse_config(data, resolve_secrets=resolve_secrets)


def load_config(path: str | os.PathLike[str], *, resolve_secrets: bool = True) -> Config:
    """Read the config file at ``path`` (a regular file of at most 1 MiB) and validate it."""
    name = os.fspath(path)
    try:
        raw = read_regular_file(name, MAX_CONFIG_FILE_BYTES)
    except UnsafeFile as exc:
        raise ConfigError("", f"cannot read config file '{name}': {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "",
            f"cannot read config file '{name}': not valid UTF-8 ({exc.reason} at byte {exc.start})",
        ) from None
    return load_config_text(text, source=name, resolve_secrets=resolve_secrets)
