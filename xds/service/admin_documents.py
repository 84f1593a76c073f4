"""The admin API's documents, ``/status`` and ``/events``, as typed values defined once.

The service builds them (:mod:`xds.service.admin_build`), the admin server serves
:meth:`StatusDocument.to_json` (:mod:`xds.service.admin_http`), and every
client reads them back with ``from_json``: ``sentinel-xds status`` and
``events``, ``drain`` waiting for sidecars, the lab, the tests and the
benchmarks. A field renamed here fails mypy in every reader instead of a
drain at run time, and a document that does not match (another version, a
proxy's error page) fails in ``from_json`` with one line naming the field,
e.g. ``status.groups[0].primary: expected a string or null, got a number 3``.

The JSON is the public wire format (scripts and alerts read it): field names
and order are what they were when these were dict literals, and a unit test
holds them to it. Each field is written once, in its dataclass: ``to_json``
and the reader walk the fields in declaration order and go by each field's
annotation (:class:`_Document`), so a field cannot be added to the value and
forgotten on the wire. Fields a reader does not know are ignored, so a newer
server can add one without breaking older clients; a field added after the
first version is marked :data:`_ADDED_LATER` and may be absent.

Pure values: nothing here does I/O or imports the service, so the lab and
the operator tools load it cheaply.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, Self, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from redis_sentinel_watch.model import Health, ReplicaSync
from xds.ads.sidecars import SyncState

__all__ = [
    "AdminDocumentError",
    "DissentState",
    "EventsDocument",
    "FailoverEvent",
    "GroupState",
    "ReplicaSyncState",
    "SentinelState",
    "SidecarState",
    "StatusDocument",
    "TypeSync",
]

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")

#: field metadata: absent in documents of older versions, read as the field's default
_ADDED_LATER: Mapping[str, bool] = {"added_later": True}


class AdminDocumentError(ValueError):
    """An admin document is not what this version expects; the message names the field."""


def _kind(value: object) -> str:
    """How a JSON value is named in an error: its kind, and the value if it is short."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    kind = {bool: "a boolean", str: "a string"}.get(type(value), "a number")
    shown = repr(value)
    return f"{kind} {shown}" if len(shown) <= 40 else kind


#: scalar annotation → (what an error says was expected, the check); bool is not a number
_SCALARS: dict[object, tuple[str, Callable[[object], bool]]] = {
    str: ("a string", lambda v: isinstance(v, str)),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
}


class _Reader:
    """One JSON object being read, with the path that names its fields in errors."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise AdminDocumentError(f"{path}: expected a JSON object, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise AdminDocumentError(f"{self.path}.{key}: missing")
        return self.data[key]

    def _bad(self, key: str, expected: str, value: object) -> AdminDocumentError:
        return AdminDocumentError(f"{self.path}.{key}: expected {expected}, got {_kind(value)}")

    def value(self, key: str, hint: object) -> Any:
        """Read ``key`` as its field's annotation ``hint`` says: a scalar (``X | None``
        allows null), a :class:`StrEnum`, ``tuple[X, ...]`` or ``Mapping[str, X]`` of
        strings or documents. Any other annotation is a programming error (KeyError)."""
        origin, args = get_origin(hint), get_args(hint)
        if origin in (Union, types.UnionType):
            (inner,) = (a for a in args if a is not type(None))
            return self._scalar(key, inner, nullable=True)
        if origin is tuple:
            return self._list(key, args[0])
        if origin is Mapping:
            return self._map(key, args[1])
        if isinstance(hint, type) and issubclass(hint, StrEnum):
            return self._enum(key, hint)
        return self._scalar(key, hint)

    def _scalar(self, key: str, kind: object, *, nullable: bool = False) -> Any:
        value = self._get(key)
        if nullable and value is None:
            return None
        expected, ok = _SCALARS[kind]
        if not ok(value):
            raise self._bad(key, expected + (" or null" if nullable else ""), value)
        return float(value) if kind is float else value

    def _enum(self, key: str, kind: type[E]) -> E:
        value = self._scalar(key, str)
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            raise AdminDocumentError(
                f"{self.path}.{key}: expected one of {choices}, got {value!r}"
            ) from None

    def _list(self, key: str, item: Any) -> tuple[Any, ...]:
        value = self._get(key)
        if item is str:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self._bad(key, "a list of strings", value)
            return tuple(value)
        if not isinstance(value, list):
            raise self._bad(key, "a list", value)
        return tuple(item._read(_Reader(v, f"{self.path}.{key}[{i}]")) for i, v in enumerate(value))

    def _map(self, key: str, item: Any) -> dict[str, Any]:
        value = self._get(key)
        if item is str:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise self._bad(key, "an object of strings", value)
            return dict(value)
        if not isinstance(value, dict):
            raise self._bad(key, "an object", value)
        return {k: item._read(_Reader(v, f"{self.path}.{key}.{k}")) for k, v in value.items()}


def _json_value(value: object) -> Any:
    """A field's JSON form: enums by value, tuples as lists, documents as objects."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, _Document):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: object) -> dict[str, Any]:
    """A document's resolved field annotations (read once per class)."""
    return get_type_hints(cls)


class _Document:
    """Base of every document (a frozen dataclass): written and read field by field."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def to_json(self) -> dict[str, Any]:
        """Every field, in declaration order (the wire format's)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def _read(cls, r: _Reader) -> Self:
        """Every field from ``r``; :class:`AdminDocumentError` names the first bad one."""
        hints = _hints(cast(type, cls))
        values = {
            f.name: r.value(f.name, hints[f.name])
            for f in fields(cls)
            if f.name in r.data or not f.metadata.get("added_later")
        }
        return cast(Callable[..., Self], cls)(**values)


# --------------------------------------------------------------------------- /status


@dataclass(frozen=True)
class SentinelState(_Document):
    """One configured Sentinel at the last poll."""

    address: str
    reachable: bool
    tilt: bool
    error: str | None


@dataclass(frozen=True)
class DissentState(_Document):
    """A Sentinel outvoted on a group: what it says against what the majority says.

    ``reasons``: ``other-primary``, ``higher-epoch``, ``tilt`` (see
    :func:`redis_sentinel_watch.agreement.assess_dissent`).
    """

    sentinel: str
    reasons: tuple[str, ...]
    primary: str | None  # None: it does not report the group
    epoch: int | None
    majority_primary: str
    majority_epoch: int


@dataclass(frozen=True)
class ReplicaSyncState(_Document):
    """One replica and whether it holds the primary's data (see
    :mod:`redis_sentinel_watch.replica_sync`): ``sync`` is ``synced``, ``unsynced``
    (Sentinel may promote it, and the data would be lost), ``down`` (Sentinel
    will not promote it) or ``unknown``; ``detail`` says why."""

    address: str
    sync: ReplicaSync
    detail: str


@dataclass(frozen=True)
class GroupState(_Document):
    """One master group: the agreed primary, its replicas, and how sure we are."""

    name: str
    primary: str | None
    replicas: tuple[str, ...]
    drained: tuple[str, ...]  # replicas with replica-priority 0 (never promoted)
    config_epoch: int
    agreeing: int
    sentinels: int
    health: Health
    degraded: bool
    provisional: bool
    reason: str
    #: Sentinels outvoted on this group
    dissent: tuple[DissentState, ...] = field(default=(), metadata=_ADDED_LATER)
    #: every replica Sentinel lists, down ones too, and whether it is synced
    replica_sync: tuple[ReplicaSyncState, ...] = field(default=(), metadata=_ADDED_LATER)

    @property
    def promotable(self) -> tuple[str, ...]:
        """Replicas a failover can go to without losing data: synced and not drained.

        A document of an older version carries no sync states; there it is every
        replica that is not drained, as those versions counted.
        """
        if not self.replica_sync:
            return tuple(r for r in self.replicas if r not in self.drained)
        return tuple(
            s.address
            for s in self.replica_sync
            if s.sync is ReplicaSync.SYNCED and s.address not in self.drained
        )

    def failover_risk(self) -> str | None:
        """What a failover of this group would do now, when that is bad; None when a
        promotable replica exists. The one wording for ``/readyz`` and ``status``."""
        if self.primary is None or self.promotable:
            return None
        risky = [
            s
            for s in self.replica_sync
            if s.address not in self.drained
            and s.sync in (ReplicaSync.UNSYNCED, ReplicaSync.UNKNOWN)
        ]
        if risky:
            shown = "; ".join(f"{s.address} {s.sync.value}: {s.detail}" for s in risky)
            return (
                f"group {self.name} has no synced replica: a failover now would lose data ({shown})"
            )
        return (
            f"group {self.name} has no promotable replica: if its primary "
            f"{self.primary} fails, Sentinel cannot fail over"
        )


@dataclass(frozen=True)
class TypeSync(_Document):
    """One resource type on one sidecar's stream: what it was sent, ACKed and NACKed."""

    state: SyncState
    sent: str
    acked: str
    nacked: str
    nack_detail: str  # Envoy's own error text
    nacks: int


@dataclass(frozen=True)
class SidecarState(_Document):
    """One connected ADS stream (normally one Envoy).

    ``types`` is keyed by short type name (``Cluster``, see
    :func:`xds.ads.typeurls.short_type`); ``primaries`` is group → the primary
    this sidecar has ACKed routing to (empty while that is not known).
    """

    stream_id: int
    node_id: str
    cluster: str
    envoy_version: str
    peer: str  # gRPC peer string, e.g. ``ipv4:127.0.0.1:5000``
    protocol: str  # sotw | delta
    connected_since: str  # UTC, ISO 8601
    types: Mapping[str, TypeSync] = field(default_factory=dict)
    primaries: Mapping[str, str] = field(default_factory=dict)

    def type(self, short: str) -> TypeSync | None:
        return self.types.get(short)

    def synced(self, *types: str) -> bool:
        """Whether every one of ``types`` (short names) is SYNCED on this stream."""
        return all(
            (ts := self.types.get(t)) is not None and ts.state is SyncState.SYNCED for t in types
        )


@dataclass(frozen=True)
class FailoverEvent(_Document):
    """One primary change from first sign to last ACK (see :mod:`xds.service.timeline`).

    Durations are milliseconds from the first sign; ``at`` is the wall clock
    (Unix seconds) of the switch.
    """

    group: str
    old: str | None
    new: str | None
    trigger: str  # drain | sentinel-event | reconcile
    sign: str  # the first Sentinel event (or poll) that started it
    epoch: int
    at: float
    detect_to_switch_ms: float | None
    detect_to_push_ms: float | None
    switch_to_push_ms: float | None
    detect_to_acked_ms: float | None  # to the last sidecar's ACK
    acked: int
    sidecars: int
    superseded: bool  # another primary change came before every ACK


@dataclass(frozen=True)
class StatusDocument(_Document):
    """``GET /status``: readiness, versions served, Sentinels, groups, sidecars, failovers.

    ``versions`` is short type name → the version of the plain snapshot.
    """

    ready: bool
    reason: str
    versions: Mapping[str, str]
    sentinels: tuple[SentinelState, ...]
    groups: tuple[GroupState, ...]
    sidecars: tuple[SidecarState, ...]
    failovers: tuple[FailoverEvent, ...]  # the last 20, oldest first

    def group(self, name: str) -> GroupState | None:
        return next((g for g in self.groups if g.name == name), None)

    def sidecar(self, node_id: str) -> SidecarState | None:
        """The first stream of ``node_id`` (by stream id), if connected."""
        return next((s for s in self.sidecars if s.node_id == node_id), None)

    @classmethod
    def from_json(cls, data: object) -> StatusDocument:
        """Read a ``/status`` body; :class:`AdminDocumentError` names the first bad field."""
        return cls._read(_Reader(data, "status"))


# --------------------------------------------------------------------------- /events


@dataclass(frozen=True)
class EventsDocument(_Document):
    """``GET /events?n=N``: the last N failover timelines, oldest first."""

    failovers: tuple[FailoverEvent, ...]

    @classmethod
    def from_json(cls, data: object) -> EventsDocument:
        """Read an ``/events`` body; :class:`AdminDocumentError` names the first bad field."""
        return cls._read(_Reader(data, "events"))
