"""The machinery behind the config declaration: key kinds, sections, and one reader.

:mod:`xds.service.config_keys` declares every key once as a :class:`Key` (its
kind, default and one-line doc) inside a :class:`Section`. This module turns
such a declaration into validation (:func:`read_section`) and into text for
``docs/config.md`` (:meth:`Kind.describe`), so the bounds in an error message,
the default the code uses and the line in the reference cannot drift apart.

A small hand-written schema rather than pydantic: the error messages are part
of the interface (``check-config`` output, the corpus in
``tests/unit/config_corpus``), and each one names a single field in the
operator's words (``must be between 1 and 600000, got 0``), first problem in
file order; translating pydantic's error lists back into that would be more
code than this.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from redis_sentinel_watch.model import Address, AddressError

__all__ = [
    "REQUIRED",
    "Bool",
    "Choice",
    "ConfigError",
    "Custom",
    "EnvName",
    "FilePath",
    "HostPort",
    "Int",
    "Key",
    "Kind",
    "Number",
    "Section",
    "Sub",
    "UserName",
    "join",
    "read_section",
    "sections",
    "show",
    "type_name",
]


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


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    (bool, "bool"),  # before int: bool is a subclass of int
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (Mapping, "mapping"),
    ((list, tuple), "list"),
)


def type_name(value: object) -> str:
    """The YAML-ish name of a value's type, for messages."""
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def show(value: object, limit: int = 40) -> str:
    """``repr`` for strings, ``str`` otherwise, cut to ``limit`` characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _g(value: float) -> str:
    return f"{value:g}"


class Kind:
    """How one key's value is checked and converted, and how the reference describes it."""

    def parse(self, value: object, path: str) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Kind):
    """An integer in ``[low, high]`` (bools are refused although YAML makes them ints)."""

    low: int
    high: int
    unit: str = ""

    def parse(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {type_name(value)}")
        if not self.low <= value <= self.high:
            raise ConfigError(
                path, f"must be between {self.low} and {self.high}, got {show(value)}"
            )
        return value

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"integer{unit}, {self.low} to {self.high}"


@dataclass(frozen=True)
class Number(Kind):
    """A number of ``what`` in ``(low, high]`` (or ``[low, high]`` with ``low_inclusive``)."""

    what: str
    low: float
    high: float
    low_inclusive: bool = False

    def parse(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number of {self.what}, got {type_name(value)}")
        # Compare before converting: a huge YAML int would overflow float().
        above = value >= self.low if self.low_inclusive else value > self.low
        if not (above and value <= self.high) or (isinstance(value, float) and math.isnan(value)):
            raise ConfigError(path, f"must be {self._range()}, got {show(value)}")
        return float(value)

    def _range(self) -> str:
        return f"{'>=' if self.low_inclusive else '>'} {_g(self.low)} and <= {_g(self.high)}"

    def describe(self) -> str:
        return f"{self.what}, {self._range()}"


@dataclass(frozen=True)
class Bool(Kind):
    def parse(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {type_name(value)}")
        return value

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Choice(Kind):
    options: tuple[str, ...]

    def parse(self, value: object, path: str) -> str:
        options = ", ".join(self.options)
        if not isinstance(value, str):
            raise ConfigError(path, f"expected one of: {options}; got {type_name(value)}")
        if value not in self.options:
            raise ConfigError(path, f"{show(value)} is not one of: {options}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{o}`" for o in self.options)


@dataclass(frozen=True)
class HostPort(Kind):
    """``host:port`` or ``[v6]:port``; with ``ip_only`` the host must be an IP literal,
    because Envoy's listeners take no host names ("malformed IP address")."""

    ip_only: bool = False

    def parse(self, value: object, path: str) -> Address:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a 'host:port' string, got {type_name(value)}")
        try:
            addr = Address.parse(value)
        except AddressError as exc:
            raise ConfigError(path, str(exc)) from None
        if self.ip_only:
            try:
                ipaddress.ip_address(addr.host)
            except ValueError:
                raise ConfigError(
                    path, f"{addr.host!r} is a host name; Envoy listeners need an IP address"
                ) from None
        return addr

    def describe(self) -> str:
        return "`ip:port` (IPv6 as `[addr]:port`)" if self.ip_only else "`host:port`"


@dataclass(frozen=True)
class FilePath(Kind):
    """A file path. ``readable`` checks it now; ``absolute`` is for paths on another host,
    which cannot be checked here and so must at least not depend on a working directory."""

    readable: bool = False
    absolute: bool = False
    what: str = "file path"

    def parse(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(path, f"expected a {self.what}, got {type_name(value)}")
        if self.absolute and not os.path.isabs(value):
            raise ConfigError(path, f"{value!r} is not an absolute path")
        if self.readable and (not os.path.isfile(value) or not os.access(value, os.R_OK)):
            raise ConfigError(path, f"{value!r} is not a readable file")
        return value

    def describe(self) -> str:
        return f"absolute {self.what}" if self.absolute else self.what


@dataclass(frozen=True)
class EnvName(Kind):
    def parse(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(
                path, f"expected an environment variable name, got {type_name(value)}"
            )
        return value

    def describe(self) -> str:
        return "environment variable name"


@dataclass(frozen=True)
class UserName(Kind):
    def parse(self, value: object, path: str) -> str:
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise ConfigError(path, "expected a non-empty name without spaces")
        return value

    def describe(self) -> str:
        return "name without spaces"


@dataclass(frozen=True)
class Custom(Kind):
    """A kind whose check is a function (lists, maps of groups); ``text`` describes it."""

    check: Callable[[object, str], Any]
    text: str
    #: sections the check reads values with (so the reference documents them)
    sections: tuple[Section, ...] = ()

    def parse(self, value: object, path: str) -> Any:
        return self.check(value, path)

    def describe(self) -> str:
        return self.text


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key that must be given
REQUIRED: Final = _Required()


@dataclass(frozen=True)
class Key:
    """One config key: name, kind, default (``REQUIRED``, ``None`` = unset) and one-line doc."""

    name: str
    kind: Kind
    doc: str
    default: Any = None
    #: how the reference shows the default when it is computed (e.g. from another key)
    default_text: str | None = None


@dataclass(frozen=True)
class Section:
    """A mapping of keys. ``name`` is its path in the reference (``groups.<name>``);
    ``refused`` maps keys that are rejected with a specific message (inline passwords);
    ``top`` marks the file's top level, whose messages say so."""

    name: str
    doc: str
    keys: tuple[Key, ...]
    refused: Mapping[str, str] = field(default_factory=dict)
    top: bool = False

    def __getitem__(self, name: str) -> Key:
        for key in self.keys:
            if key.name == name:
                return key
        raise KeyError(name)

    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    def expected(self) -> str:
        """What a value of this section must look like, for "expected ..., got ..." errors."""
        if self.top:
            return f"a mapping at the top level with keys: {', '.join(self.names())}"
        required = [k.name for k in self.keys if k.default is REQUIRED]
        if not required:
            return f"a mapping with keys: {', '.join(self.names())}"
        optional = [k.name for k in self.keys if k.default is not REQUIRED]
        text = "a mapping with " + ", ".join(repr(r) for r in required)
        return text + (f" (and optional {', '.join(optional)})" if optional else "")


@dataclass(frozen=True)
class Sub(Kind):
    """A nested section; its value is the dict :func:`read_section` returns for it."""

    section: Section

    def parse(self, value: object, path: str) -> dict[str, Any]:
        return read_section(value, path, self.section)

    def describe(self) -> str:
        return f"mapping, see [`{self.section.name}`](#{_anchor(self.section.name)})"


def _anchor(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def _check_keys(data: Mapping[Any, Any], path: str, section: Section) -> None:
    """Refuse specially refused keys, then unknown keys (first in file order), then report
    the first missing required key."""
    allowed = section.names()
    for key, message in section.refused.items():
        if key in data:
            raise ConfigError(join(path, key), message)
    for key in data:
        if not isinstance(key, str) or key not in allowed:
            message = f"unknown key; expected one of: {', '.join(allowed)}"
            if isinstance(key, str):
                close = difflib.get_close_matches(key, allowed, n=1)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
            raise ConfigError(join(path, str(key)), message)
    for k in section.keys:
        if k.default is REQUIRED and k.name not in data:
            raise ConfigError(join(path, k.name), "required")


def read_section(value: object, path: str, section: Section) -> dict[str, Any]:
    """Validate ``value`` against ``section``: every key's parsed value, or its default
    (``None`` for an unset optional key). Keys are checked in declaration order, so the
    first problem reported does not depend on how the file orders them."""
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"expected {section.expected()}, got {type_name(value)}")
    _check_keys(value, path, section)
    out: dict[str, Any] = {}
    for k in section.keys:
        raw = value.get(k.name)
        if raw is None and isinstance(k.kind, Sub) and k.default is not REQUIRED:
            # absent or a bare key: "not set" (None), or all defaults when the default is {}
            sub = join(path, k.name)
            out[k.name] = None if k.default is None else read_section({}, sub, k.kind.section)
        elif k.name in value:
            out[k.name] = k.kind.parse(raw, join(path, k.name))
        else:
            out[k.name] = k.default
    return out


def sections(top: Section) -> list[Section]:
    """``top`` and every section nested in it, depth first, each once (for the reference)."""
    found: list[Section] = []

    def walk(section: Section) -> None:
        if any(s is section for s in found):
            return
        found.append(section)
        for k in section.keys:
            if isinstance(k.kind, Sub):
                walk(k.kind.section)
            if isinstance(k.kind, Custom):
                for nested in k.kind.sections:
                    walk(nested)

    walk(top)
    return found
