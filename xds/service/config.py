"""Load and validate the sentinel-xds configuration file.

The file is YAML::

    sentinels: ["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"]
    groups:
      mymaster:
        listen: "127.0.0.1:6379"
        op_timeout_ms: 5000
        sidecars:                   # optional; default: every sidecar receives the group
          clusters: [docker-registry]   # node cluster (--node-cluster) is one of these
          metadata: {team: infra}       # and node metadata has these top-level values
        upstream_auth:              # optional; AUTH the sidecar sends to Redis (over xDS)
          username: app
          password_file: /etc/sentinel-xds/app.pass    # or password_env: VAR_NAME
        downstream_auth:            # optional; AUTH the sidecar demands from clients
          password_env: CLIENT_PASSWORD
    xds:
      listen: "127.0.0.1:18000"
      max_streams: 5000             # beyond it new streams get RESOURCE_EXHAUSTED
      max_requests_per_second: 100  # per stream; requests beyond it are delayed
      tls:                          # optional; see xds/tls.py and docs/security.md
        cert_file: /etc/sentinel-xds/xds.pem
        key_file: /etc/sentinel-xds/xds.key
        client_ca_file: /etc/sentinel-xds/sidecar-ca.pem   # mutual TLS
        require_client_cert: true   # default: true when client_ca_file is given
    admin:
      listen: "127.0.0.1:9102"
    watch:
      poll_interval_s: 1.0
      sentinel_timeout_s: 0.5
      role_check: true
      react_on_promotion: true      # switch when the selected replica says master
      promotion_probe_interval_s: 0.02
      fence_pause_ms: 2000          # CLIENT PAUSE WRITE on the replaced primary (at most
                                    # half of down-after-milliseconds); 0 = off
    sentinel_auth:                  # optional; AUTH to the Sentinels
      username: sentinel-xds        # optional ACL user (default user when absent)
      password_file: /etc/sentinel-xds/sentinel.pass   # or password_env: VAR_NAME
    redis_auth:                     # optional; AUTH to Redis nodes (ROLE, fencing)
      password_env: REDIS_PASSWORD
    tls:                            # optional; TLS to Sentinels and Redis nodes
      ca_file: /etc/ssl/redis-ca.pem
      cert_file: /etc/ssl/client.pem   # optional client certificate (with key_file)
      key_file: /etc/ssl/client.key
    log:
      format: auto
      level: info

Every problem is reported as a single :class:`ConfigError` that names the
offending field with a dotted path (``groups.mymaster.listen``,
``sentinels[1]``) and says what was expected. Validation stops at the first
problem; nothing in here lets a traceback escape for bad input.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import yaml
import yaml.constructor
import yaml.nodes
import yaml.reader

from redis_sentinel_watch.auth import Credentials, Secret, TlsSettings
from redis_sentinel_watch.model import Address, AddressError
from xds.resources.profiles import SidecarSelector
from xds.service.tls import ServerTls, check_server_tls

__all__ = [
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

DEFAULT_ADMIN_LISTEN = Address("127.0.0.1", 9102)
DEFAULT_OP_TIMEOUT_MS = 5000
DEFAULT_MAX_STREAMS = 5000
MAX_MAX_STREAMS = 1_000_000
DEFAULT_FENCE_PAUSE_MS = 2000
MAX_FENCE_PAUSE_MS = 60_000
MAX_PROBE_INTERVAL_S = 1.0
MAX_OP_TIMEOUT_MS = 600_000
MAX_POLL_INTERVAL_S = 60.0
MAX_SENTINEL_TIMEOUT_S = 30.0
#: per ADS stream; Envoy sends a handful per topology change, so this only bites a flood
DEFAULT_MAX_REQUESTS_PER_SECOND = 100.0
MAX_MAX_REQUESTS_PER_SECOND = 100_000.0

# Characters that may not appear in a group name: they separate parts of xDS
# resource names ('@', '/') or would make the name unusable as a Redis key.
_FORBIDDEN_NAME_CHARS = frozenset("@/")


def _one_line(text: str) -> str:
    """Join the lines of ``text`` with single spaces so an error prints on one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class ConfigError(Exception):
    """The configuration is invalid.

    ``field`` is a dotted path such as ``groups.mymaster.listen`` or
    ``sentinels[1]`` (``''`` when the problem concerns the whole file);
    ``message`` is human text. ``str()`` is ``"<field>: <message>"`` on one line.
    """

    field: str
    message: str

    def __init__(self, field: str, message: str) -> None:
        self.field = _one_line(field)
        self.message = _one_line(message)
        super().__init__(self.field, self.message)

    def __str__(self) -> str:
        if not self.field:
            return self.message
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class GroupConfig:
    """One Sentinel master group and where sidecars accept its Redis clients."""

    name: str
    listen: Address
    op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS
    sidecars: SidecarSelector | None = None  # None: every sidecar receives the group
    # what the sidecar sends to Redis (redis_proxy protocol options; travels over xDS)
    upstream_auth: Credentials | None = None
    # what clients must AUTH with at the sidecar (redis_proxy downstream auth)
    downstream_auth: Credentials | None = None


@dataclass(frozen=True)
class WatchConfig:
    """How the Sentinels are polled."""

    poll_interval_s: float = 1.0
    sentinel_timeout_s: float = 0.5
    role_check: bool = True
    react_on_promotion: bool = True
    promotion_probe_interval_s: float = 0.02
    fence_pause_ms: int = DEFAULT_FENCE_PAUSE_MS


@dataclass(frozen=True)
class LogConfig:
    """Log rendering (``auto`` is JSON unless stdout is a TTY) and threshold."""

    format: LogFormat = "auto"
    level: LogLevel = "info"


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    sentinels: tuple[Address, ...]
    groups: tuple[GroupConfig, ...]
    xds_listen: Address
    admin_listen: Address = DEFAULT_ADMIN_LISTEN
    watch: WatchConfig = WatchConfig()
    log: LogConfig = LogConfig()
    xds_max_streams: int = DEFAULT_MAX_STREAMS
    sentinel_auth: Credentials | None = None
    redis_auth: Credentials | None = None
    tls: TlsSettings | None = None
    xds_tls: ServerTls | None = None
    xds_max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND

    def group(self, name: str) -> GroupConfig | None:
        """The group called ``name``, or None."""
        for g in self.groups:
            if g.name == name:
                return g
        return None


# --------------------------------------------------------------------------- helpers

_TOP_KEYS = (
    "sentinels",
    "groups",
    "xds",
    "admin",
    "watch",
    "log",
    "sentinel_auth",
    "redis_auth",
    "tls",
)
_GROUP_KEYS = ("listen", "op_timeout_ms", "sidecars", "upstream_auth", "downstream_auth")
_SIDECARS_KEYS = ("clusters", "metadata")
_LISTEN_KEYS = ("listen",)
_XDS_KEYS = ("listen", "max_streams", "max_requests_per_second", "tls")
_XDS_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "require_client_cert")
_WATCH_KEYS = (
    "poll_interval_s",
    "sentinel_timeout_s",
    "role_check",
    "react_on_promotion",
    "promotion_probe_interval_s",
    "fence_pause_ms",
)
_AUTH_KEYS = ("username", "password_file", "password_env")
_TLS_KEYS = ("ca_file", "cert_file", "key_file", "verify")
_LOG_KEYS = ("format", "level")

_T = TypeVar("_T")

_LOG_FORMATS: dict[str, LogFormat] = {name: name for name in get_args(LogFormat)}
_LOG_LEVELS: dict[str, LogLevel] = {name: name for name in get_args(LogLevel)}


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "bool"),  # before int: bool is a subclass of int
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (Mapping, "mapping"),
    ((list, tuple), "list"),
)


def _type_name(value: object) -> str:
    """The YAML-ish name of a value's type, for messages."""
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _show(value: object, limit: int = 40) -> str:
    """``repr`` for strings, ``str`` otherwise, cut to ``limit`` characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: object, path: str, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected {what}, got {_type_name(value)}")
    return value


def _check_keys(
    data: Mapping[Any, Any], path: str, allowed: Sequence[str], required: Sequence[str] = ()
) -> None:
    """Reject unknown keys (first in file order), then report the first missing required key."""
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            message = f"unknown key; expected one of: {', '.join(allowed)}"
            if isinstance(key, str):
                close = difflib.get_close_matches(key, allowed, n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            raise ConfigError(_join(path, str(key)), message)
    for key in required:
        if key not in data:
            raise ConfigError(_join(path, key), "required")


def _address(value: object, path: str) -> Address:
    if not isinstance(value, str):
        raise ConfigError(path, f"expected a 'host:port' string, got {_type_name(value)}")
    try:
        return Address.parse(value)
    except AddressError as exc:
        raise ConfigError(path, str(exc)) from None


def _int_in_range(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"expected an integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {_show(value)}")
    return value


def _seconds(value: object, path: str, high: float) -> float:
    """A positive number of seconds up to ``high``; ints are accepted, bools are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"expected a number of seconds, got {_type_name(value)}")
    # Compare before converting: a huge YAML int would overflow float().
    if not (0 < value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise ConfigError(path, f"must be > 0 and <= {high:g}, got {_show(value)}")
    return float(value)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {_type_name(value)}")
    return value


def _choice(value: object, path: str, choices: Mapping[str, _T]) -> _T:
    options = ", ".join(choices)
    if not isinstance(value, str):
        raise ConfigError(path, f"expected one of: {options}; got {_type_name(value)}")
    chosen = choices.get(value)
    if chosen is None:
        raise ConfigError(path, f"{_show(value)} is not one of: {options}")
    return chosen


def _endpoint_key(addr: Address) -> tuple[str, int]:
    """A comparison key: IP literals in canonical form, host names case-folded."""
    try:
        host = str(ipaddress.ip_address(addr.host))
    except ValueError:
        host = addr.host.lower()
    return (host, addr.port)


def _is_wildcard(addr: Address) -> bool:
    try:
        return ipaddress.ip_address(addr.host).is_unspecified
    except ValueError:
        return False


# --------------------------------------------------------------------------- sections


def _parse_sentinels(value: object) -> tuple[Address, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            "sentinels", f"expected a list of 'host:port' strings, got {_type_name(value)}"
        )
    if not value:
        raise ConfigError("sentinels", "must list at least one Sentinel")
    result: list[Address] = []
    seen: dict[tuple[str, int], int] = {}
    for i, item in enumerate(value):
        path = f"sentinels[{i}]"
        addr = _address(item, path)
        key = _endpoint_key(addr)
        if key in seen:
            raise ConfigError(path, f"duplicate of sentinels[{seen[key]}] ({addr})")
        seen[key] = i
        result.append(addr)
    return tuple(result)


def _check_group_name(name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError("groups", f"group name must be a string, got {_type_name(name)} {name!r}")
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


def _parse_group(name: str, value: object) -> GroupConfig:
    path = f"groups.{name}"
    body = _mapping(value, path, "a mapping with 'listen' (and optional 'op_timeout_ms')")
    _check_keys(body, path, _GROUP_KEYS, required=("listen",))
    listen = _address(body["listen"], f"{path}.listen")
    op_timeout_ms = DEFAULT_OP_TIMEOUT_MS
    if "op_timeout_ms" in body:
        op_timeout_ms = _int_in_range(
            body["op_timeout_ms"], f"{path}.op_timeout_ms", 1, MAX_OP_TIMEOUT_MS
        )
    sidecars = (
        _parse_sidecars(body["sidecars"], f"{path}.sidecars") if "sidecars" in body else None
    )
    return GroupConfig(
        name=name,
        listen=listen,
        op_timeout_ms=op_timeout_ms,
        sidecars=sidecars,
        upstream_auth=_parse_auth(body.get("upstream_auth"), f"{path}.upstream_auth"),
        downstream_auth=_parse_auth(body.get("downstream_auth"), f"{path}.downstream_auth"),
    )


def _parse_sidecars(value: object, path: str) -> SidecarSelector:
    """``{clusters: [..], metadata: {key: value}}``: at least one, none empty."""
    body = _mapping(value, path, "a mapping with 'clusters' and/or 'metadata'")
    _check_keys(body, path, _SIDECARS_KEYS)
    if not body:
        raise ConfigError(path, "give 'clusters' and/or 'metadata' (or drop 'sidecars')")
    clusters: list[str] = []
    if "clusters" in body:
        raw = body["clusters"]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(
                f"{path}.clusters", f"expected a non-empty list of node cluster names, got "
                f"{_type_name(raw)}"
            )
        for i, item in enumerate(raw):
            if not isinstance(item, str) or not item:
                raise ConfigError(
                    f"{path}.clusters[{i}]", f"expected a non-empty string, got {_type_name(item)}"
                )
            clusters.append(item)
    metadata: list[tuple[str, str]] = []
    if "metadata" in body:
        raw_meta = _mapping(body["metadata"], f"{path}.metadata", "a mapping of key to value")
        if not raw_meta:
            raise ConfigError(f"{path}.metadata", "must name at least one key")
        for key, item in raw_meta.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{path}.metadata", f"keys must be strings, got {key!r}")
            if not isinstance(item, str | int):  # bool is an int: true/false
                raise ConfigError(
                    f"{path}.metadata.{key}",
                    f"expected a string or number, got {_type_name(item)}",
                )
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            metadata.append((key, text))
    return SidecarSelector(clusters=tuple(clusters), metadata=tuple(metadata))


def _parse_groups(value: object) -> tuple[GroupConfig, ...]:
    groups = _mapping(value, "groups", "a mapping of group name to group settings")
    if not groups:
        raise ConfigError("groups", "must define at least one group")
    result: list[GroupConfig] = []
    ports: dict[int, str] = {}
    for raw_name, body in groups.items():
        group = _parse_group(_check_group_name(raw_name), body)
        path = f"groups.{group.name}.listen"
        port = group.listen.port
        if port in ports:
            raise ConfigError(path, f"port {port} is already used by {ports[port]}")
        ports[port] = path
        result.append(group)
    return tuple(result)


def _parse_listen_section(
    value: object, path: str, default: Address | None, keys: Sequence[str] = _LISTEN_KEYS
) -> tuple[Address, bool]:
    """Parse ``{listen: host:port}``; return the address and whether it was given explicitly."""
    if value is None and default is not None:
        return default, False
    body = _mapping(value, path, "a mapping with 'listen'")
    _check_keys(body, path, keys, required=("listen",) if default is None else ())
    if "listen" not in body and default is not None:
        return default, False
    return _address(body["listen"], f"{path}.listen"), True


def _parse_watch(value: object) -> WatchConfig:
    if value is None:
        return WatchConfig()
    body = _mapping(value, "watch", f"a mapping with keys: {', '.join(_WATCH_KEYS)}")
    _check_keys(body, "watch", _WATCH_KEYS)
    defaults = WatchConfig()
    return WatchConfig(
        poll_interval_s=(
            _seconds(body["poll_interval_s"], "watch.poll_interval_s", MAX_POLL_INTERVAL_S)
            if "poll_interval_s" in body
            else defaults.poll_interval_s
        ),
        sentinel_timeout_s=(
            _seconds(body["sentinel_timeout_s"], "watch.sentinel_timeout_s", MAX_SENTINEL_TIMEOUT_S)
            if "sentinel_timeout_s" in body
            else defaults.sentinel_timeout_s
        ),
        role_check=(
            _bool(body["role_check"], "watch.role_check")
            if "role_check" in body
            else defaults.role_check
        ),
        react_on_promotion=(
            _bool(body["react_on_promotion"], "watch.react_on_promotion")
            if "react_on_promotion" in body
            else defaults.react_on_promotion
        ),
        promotion_probe_interval_s=(
            _seconds(
                body["promotion_probe_interval_s"],
                "watch.promotion_probe_interval_s",
                MAX_PROBE_INTERVAL_S,
            )
            if "promotion_probe_interval_s" in body
            else defaults.promotion_probe_interval_s
        ),
        fence_pause_ms=(
            _int_in_range(body["fence_pause_ms"], "watch.fence_pause_ms", 0, MAX_FENCE_PAUSE_MS)
            if "fence_pause_ms" in body
            else defaults.fence_pause_ms
        ),
    )


def _password(body: Mapping[Any, Any], path: str) -> Secret:
    """The password named by ``password_file`` or ``password_env`` (exactly one), read now.

    Inline passwords are refused so that a config file can be shared and
    logged; the value itself never appears in an error message.
    """
    has_file, has_env = "password_file" in body, "password_env" in body
    if has_file == has_env:
        raise ConfigError(path, "give exactly one of 'password_file' or 'password_env'")
    if has_file:
        field_path = f"{path}.password_file"
        name = body["password_file"]
        if not isinstance(name, str) or not name:
            raise ConfigError(field_path, f"expected a file path, got {_type_name(name)}")
        try:
            with open(name, encoding="utf-8") as f:
                value = f.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(field_path, f"cannot read {name!r}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(field_path, f"{name!r} is not valid UTF-8") from None
        if not value:
            raise ConfigError(field_path, f"{name!r} is empty")
        return Secret(value)
    field_path = f"{path}.password_env"
    var = body["password_env"]
    if not isinstance(var, str) or not var:
        raise ConfigError(
            field_path, f"expected an environment variable name, got {_type_name(var)}"
        )
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(field_path, f"environment variable {var!r} is not set or empty")
    return Secret(value)


def _parse_auth(value: object, path: str) -> Credentials | None:
    if value is None:
        return None
    body = _mapping(value, path, f"a mapping with keys: {', '.join(_AUTH_KEYS)}")
    if "password" in body:
        raise ConfigError(
            f"{path}.password",
            "inline passwords are not accepted; use 'password_file' or 'password_env'",
        )
    _check_keys(body, path, _AUTH_KEYS)
    username: str | None = None
    if "username" in body:
        username = body["username"]
        if not isinstance(username, str) or not username or any(c.isspace() for c in username):
            raise ConfigError(f"{path}.username", "expected a non-empty name without spaces")
    return Credentials(password=_password(body, path), username=username)


def _readable_file(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"expected a file path, got {_type_name(value)}")
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise ConfigError(path, f"{value!r} is not a readable file")
    return value


def _parse_tls(value: object) -> TlsSettings | None:
    if value is None:
        return None
    body = _mapping(value, "tls", f"a mapping with keys: {', '.join(_TLS_KEYS)}")
    _check_keys(body, "tls", _TLS_KEYS)
    if ("cert_file" in body) != ("key_file" in body):
        missing = "key_file" if "cert_file" in body else "cert_file"
        raise ConfigError(f"tls.{missing}", "cert_file and key_file must be given together")
    files = {
        key: _readable_file(body[key], f"tls.{key}") if key in body else None
        for key in ("ca_file", "cert_file", "key_file")
    }
    return TlsSettings(
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        verify=_bool(body["verify"], "tls.verify") if "verify" in body else True,
    )


def _parse_xds_tls(value: object) -> ServerTls | None:
    """``xds.tls``: server certificate and key, and for mutual TLS the clients' CA."""
    if value is None:
        return None
    path = "xds.tls"
    body = _mapping(value, path, f"a mapping with keys: {', '.join(_XDS_TLS_KEYS)}")
    _check_keys(body, path, _XDS_TLS_KEYS, required=("cert_file", "key_file"))
    ca = (
        _readable_file(body["client_ca_file"], f"{path}.client_ca_file")
        if "client_ca_file" in body
        else None
    )
    require = (
        _bool(body["require_client_cert"], f"{path}.require_client_cert")
        if "require_client_cert" in body
        else ca is not None
    )
    if require and ca is None:
        raise ConfigError(f"{path}.client_ca_file", "required when require_client_cert is true")
    if ca is not None and not require:
        raise ConfigError(
            f"{path}.require_client_cert",
            "false leaves client_ca_file unused (gRPC then asks for no client certificate); "
            "drop client_ca_file or set require_client_cert: true",
        )
    tls = ServerTls(
        cert_file=_readable_file(body["cert_file"], f"{path}.cert_file"),
        key_file=_readable_file(body["key_file"], f"{path}.key_file"),
        client_ca_file=ca,
        require_client_cert=require,
    )
    problem = check_server_tls(tls)
    if problem is not None:
        raise ConfigError(f"{path}.{problem.field}", problem.message)
    return tls


def _rate(value: object, path: str) -> float:
    """A positive number of requests per second (ints accepted, bools not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            path, f"expected a number of requests per second, got {_type_name(value)}"
        )
    if not (0 < value <= MAX_MAX_REQUESTS_PER_SECOND) or (
        isinstance(value, float) and math.isnan(value)
    ):
        raise ConfigError(
            path, f"must be > 0 and <= {MAX_MAX_REQUESTS_PER_SECOND:g}, got {_show(value)}"
        )
    return float(value)


def _parse_log(value: object) -> LogConfig:
    if value is None:
        return LogConfig()
    body = _mapping(value, "log", f"a mapping with keys: {', '.join(_LOG_KEYS)}")
    _check_keys(body, "log", _LOG_KEYS)
    defaults = LogConfig()
    return LogConfig(
        format=(
            _choice(body["format"], "log.format", _LOG_FORMATS)
            if "format" in body
            else defaults.format
        ),
        level=(
            _choice(body["level"], "log.level", _LOG_LEVELS) if "level" in body else defaults.level
        ),
    )


# --------------------------------------------------------------------------- entry points


def parse_config(data: object) -> Config:
    """Validate an already-parsed YAML value and build a :class:`Config`.

    Raises :class:`ConfigError` for the first problem found.
    """
    if data is None:
        raise ConfigError(
            "", f"config is empty; expected a mapping with keys: {', '.join(_TOP_KEYS)}"
        )
    top = _mapping(data, "", f"a mapping at the top level with keys: {', '.join(_TOP_KEYS)}")
    _check_keys(top, "", _TOP_KEYS, required=("sentinels", "groups", "xds"))

    sentinels = _parse_sentinels(top["sentinels"])
    groups = _parse_groups(top["groups"])
    xds_listen, _ = _parse_listen_section(top["xds"], "xds", None, _XDS_KEYS)
    max_streams = DEFAULT_MAX_STREAMS
    if "max_streams" in top["xds"]:
        max_streams = _int_in_range(
            top["xds"]["max_streams"], "xds.max_streams", 1, MAX_MAX_STREAMS
        )
    max_rps = DEFAULT_MAX_REQUESTS_PER_SECOND
    if "max_requests_per_second" in top["xds"]:
        max_rps = _rate(top["xds"]["max_requests_per_second"], "xds.max_requests_per_second")
    xds_tls = _parse_xds_tls(top["xds"].get("tls"))
    admin_listen, explicit = _parse_listen_section(top.get("admin"), "admin", DEFAULT_ADMIN_LISTEN)

    same_port = xds_listen.port == admin_listen.port
    overlapping = (
        _endpoint_key(xds_listen)[0] == _endpoint_key(admin_listen)[0]
        or _is_wildcard(xds_listen)
        or _is_wildcard(admin_listen)
    )
    if same_port and overlapping:
        which = "" if explicit else " (the default)"
        raise ConfigError(
            "admin.listen",
            f"{admin_listen}{which} conflicts with xds.listen ({xds_listen}); "
            "they must use different ports",
        )

    return Config(
        sentinels=sentinels,
        groups=groups,
        xds_listen=xds_listen,
        xds_max_streams=max_streams,
        xds_max_requests_per_second=max_rps,
        xds_tls=xds_tls,
        admin_listen=admin_listen,
        watch=_parse_watch(top.get("watch")),
        log=_parse_log(top.get("log")),
        sentinel_auth=_parse_auth(top.get("sentinel_auth"), "sentinel_auth"),
        redis_auth=_parse_auth(top.get("redis_auth"), "redis_auth"),
        tls=_parse_tls(top.get("tls")),
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


def load_config_text(text: str, source: str = "<string>") -> Config:
    """Parse YAML ``text`` and validate it; ``source`` names it in YAML error messages."""
    try:
        data: object = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    except RecursionError:
        raise ConfigError("", f"{source}: invalid YAML: nested too deeply") from None
    return parse_config(data)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read the config file at ``path`` and validate it."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError("", f"cannot read config file '{name}': {reason}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "",
            f"cannot read config file '{name}': not valid UTF-8 ({exc.reason} at byte {exc.start})",
        ) from None
    return load_config_text(text, source=name)
