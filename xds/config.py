"""Load and validate the sentinel-xds configuration file.

The file is YAML::

    sentinels: ["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"]
    groups:
      mymaster:
        listen: "127.0.0.1:6379"
        op_timeout_ms: 5000
    xds:
      listen: "127.0.0.1:18000"
    admin:
      listen: "127.0.0.1:9102"
    watch:
      poll_interval_s: 1.0
      sentinel_timeout_s: 0.5
      role_check: true
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

from redis_sentinel_watch.model import Address, AddressError

__all__ = [
    "Config",
    "ConfigError",
    "GroupConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "WatchConfig",
    "load_config",
    "load_config_text",
    "parse_config",
]

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

DEFAULT_ADMIN_LISTEN = Address("127.0.0.1", 9102)
DEFAULT_OP_TIMEOUT_MS = 5000
MAX_OP_TIMEOUT_MS = 600_000
MAX_POLL_INTERVAL_S = 60.0
MAX_SENTINEL_TIMEOUT_S = 30.0

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


@dataclass(frozen=True)
class WatchConfig:
    """How the Sentinels are polled."""

    poll_interval_s: float = 1.0
    sentinel_timeout_s: float = 0.5
    role_check: bool = True


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

    def group(self, name: str) -> GroupConfig | None:
        """The group called ``name``, or None."""
        for g in self.groups:
            if g.name == name:
                return g
        return None


# --------------------------------------------------------------------------- helpers

_TOP_KEYS = ("sentinels", "groups", "xds", "admin", "watch", "log")
_GROUP_KEYS = ("listen", "op_timeout_ms")
_LISTEN_KEYS = ("listen",)
_WATCH_KEYS = ("poll_interval_s", "sentinel_timeout_s", "role_check")
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
    return GroupConfig(name=name, listen=listen, op_timeout_ms=op_timeout_ms)


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
    value: object, path: str, default: Address | None
) -> tuple[Address, bool]:
    """Parse ``{listen: host:port}``; return the address and whether it was given explicitly."""
    if value is None and default is not None:
        return default, False
    body = _mapping(value, path, "a mapping with 'listen'")
    _check_keys(body, path, _LISTEN_KEYS, required=("listen",) if default is None else ())
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
    )


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
    xds_listen, _ = _parse_listen_section(top["xds"], "xds", None)
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
        admin_listen=admin_listen,
        watch=_parse_watch(top.get("watch")),
        log=_parse_log(top.get("log")),
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
