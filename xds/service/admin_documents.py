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
holds them to it. Fields a reader does not know are ignored, so a newer
server can add one without breaking older clients.

Pure values: nothing here does I/O or imports the service, so the lab and
the operator tools load it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

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

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string", value)
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "a string or null", value)
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def integer(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer", value)
        return value

    def number(self, key: str) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number", value)
        return float(value)

    def opt_number(self, key: str) -> float | None:
        return None if self._get(key) is None else self.number(key)

    def enum(self, key: str, kind: type[E]) -> E:
        value = self.text(key)
        try:
            return kind(value)
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            raise AdminDocumentError(
                f"{self.path}.{key}: expected one of {choices}, got {value!r}"
            ) from None

    def strs(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings", value)
        return tuple(value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(key, "an object of strings", value)
        return dict(value)

    def objects(self, key: str, read: Callable[[_Reader], T]) -> tuple[T, ...]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list", value)
        return tuple(read(_Reader(v, f"{self.path}.{key}[{i}]")) for i, v in enumerate(value))

    def object_map(self, key: str, read: Callable[[_Reader], T]) -> dict[str, T]:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._bad(key, "an object", value)
        return {k: read(_Reader(v, f"{self.path}.{key}.{k}")) for k, v in value.items()}


# --------------------------------------------------------------------------- /status


@dataclass(frozen=True)
class SentinelState:
    """One configured Sentinel at the last poll."""

    address: str
    reachable: bool
    tilt: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "reachable": self.reachable,
            "tilt": self.tilt,
            "error": self.error,
        }

    @classmethod
    def _read(cls, r: _Reader) -> SentinelState:
        return cls(r.text("address"), r.flag("reachable"), r.flag("tilt"), r.opt_text("error"))


@dataclass(frozen=True)
class DissentState:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "sentinel": self.sentinel,
            "reasons": list(self.reasons),
            "primary": self.primary,
            "epoch": self.epoch,
            "majority_primary": self.majority_primary,
            "majority_epoch": self.majority_epoch,
        }

    @classmethod
    def _read(cls, r: _Reader) -> DissentState:
        return cls(
            sentinel=r.text("sentinel"),
            reasons=r.strs("reasons"),
            primary=r.opt_text("primary"),
            epoch=None if r.data.get("epoch") is None else r.integer("epoch"),
            majority_primary=r.text("majority_primary"),
            majority_epoch=r.integer("majority_epoch"),
        )


@dataclass(frozen=True)
class ReplicaSyncState:
    """One replica and whether it holds the primary's data (see
    :mod:`redis_sentinel_watch.replica_sync`): ``sync`` is ``synced``, ``unsynced``
    (Sentinel may promote it, and the data would be lost), ``down`` (Sentinel
    will not promote it) or ``unknown``; ``detail`` says why."""

    address: str
    sync: ReplicaSync
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "sync": self.sync.value, "detail": self.detail}

    @classmethod
    def _read(cls, r: _Reader) -> ReplicaSyncState:
        return cls(r.text("address"), r.enum("sync", ReplicaSync), r.text("detail"))


@dataclass(frozen=True)
class GroupState:
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
    #: Sentinels outvoted on this group (absent in documents of older versions)
    dissent: tuple[DissentState, ...] = ()
    #: every replica Sentinel lists, down ones too, and whether it is synced (absent in
    #: documents of older versions)
    replica_sync: tuple[ReplicaSyncState, ...] = ()

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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "primary": self.primary,
            "replicas": list(self.replicas),
            "drained": list(self.drained),
            "config_epoch": self.config_epoch,
            "agreeing": self.agreeing,
            "sentinels": self.sentinels,
            "health": self.health.value,
            "degraded": self.degraded,
            "provisional": self.provisional,
            "reason": self.reason,
            "dissent": [d.to_json() for d in self.dissent],
            "replica_sync": [r.to_json() for r in self.replica_sync],
        }

    @classmethod
    def _read(cls, r: _Reader) -> GroupState:
        return cls(
            name=r.text("name"),
            primary=r.opt_text("primary"),
            replicas=r.strs("replicas"),
            drained=r.strs("drained"),
            config_epoch=r.integer("config_epoch"),
            agreeing=r.integer("agreeing"),
            sentinels=r.integer("sentinels"),
            health=r.enum("health", Health),
            degraded=r.flag("degraded"),
            provisional=r.flag("provisional"),
            reason=r.text("reason"),
            dissent=r.objects("dissent", DissentState._read) if "dissent" in r.data else (),
            replica_sync=(
                r.objects("replica_sync", ReplicaSyncState._read)
                if "replica_sync" in r.data
                else ()
            ),
        )


@dataclass(frozen=True)
class TypeSync:
    """One resource type on one sidecar's stream: what it was sent, ACKed and NACKed."""

    state: SyncState
    sent: str
    acked: str
    nacked: str
    nack_detail: str  # Envoy's own error text
    nacks: int

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "sent": self.sent,
            "acked": self.acked,
            "nacked": self.nacked,
            "nack_detail": self.nack_detail,
            "nacks": self.nacks,
        }

    @classmethod
    def _read(cls, r: _Reader) -> TypeSync:
        return cls(
            r.enum("state", SyncState),
            r.text("sent"),
            r.text("acked"),
            r.text("nacked"),
            r.text("nack_detail"),
            r.integer("nacks"),
        )


@dataclass(frozen=True)
class SidecarState:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "node_id": self.node_id,
            "cluster": self.cluster,
            "envoy_version": self.envoy_version,
            "peer": self.peer,
            "protocol": self.protocol,
            "connected_since": self.connected_since,
            "types": {name: ts.to_json() for name, ts in self.types.items()},
            "primaries": dict(self.primaries),
        }

    @classmethod
    def _read(cls, r: _Reader) -> SidecarState:
        return cls(
            stream_id=r.integer("stream_id"),
            node_id=r.text("node_id"),
            cluster=r.text("cluster"),
            envoy_version=r.text("envoy_version"),
            peer=r.text("peer"),
            protocol=r.text("protocol"),
            connected_since=r.text("connected_since"),
            types=r.object_map("types", TypeSync._read),
            primaries=r.str_map("primaries"),
        )


@dataclass(frozen=True)
class FailoverEvent:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "old": self.old,
            "new": self.new,
            "trigger": self.trigger,
            "sign": self.sign,
            "epoch": self.epoch,
            "at": self.at,
            "detect_to_switch_ms": self.detect_to_switch_ms,
            "detect_to_push_ms": self.detect_to_push_ms,
            "switch_to_push_ms": self.switch_to_push_ms,
            "detect_to_acked_ms": self.detect_to_acked_ms,
            "acked": self.acked,
            "sidecars": self.sidecars,
            "superseded": self.superseded,
        }

    @classmethod
    def _read(cls, r: _Reader) -> FailoverEvent:
        return cls(
            group=r.text("group"),
            old=r.opt_text("old"),
            new=r.opt_text("new"),
            trigger=r.text("trigger"),
            sign=r.text("sign"),
            epoch=r.integer("epoch"),
            at=r.number("at"),
            detect_to_switch_ms=r.opt_number("detect_to_switch_ms"),
            detect_to_push_ms=r.opt_number("detect_to_push_ms"),
            switch_to_push_ms=r.opt_number("switch_to_push_ms"),
            detect_to_acked_ms=r.opt_number("detect_to_acked_ms"),
            acked=r.integer("acked"),
            sidecars=r.integer("sidecars"),
            superseded=r.flag("superseded"),
        )


@dataclass(frozen=True)
class StatusDocument:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": self.reason,
            "versions": dict(self.versions),
            "sentinels": [s.to_json() for s in self.sentinels],
            "groups": [g.to_json() for g in self.groups],
            "sidecars": [s.to_json() for s in self.sidecars],
            "failovers": [f.to_json() for f in self.failovers],
        }

    @classmethod
    def from_json(cls, data: object) -> StatusDocument:
        """Read a ``/status`` body; :class:`AdminDocumentError` names the first bad field."""
        r = _Reader(data, "status")
        return cls(
            ready=r.flag("ready"),
            reason=r.text("reason"),
            versions=r.str_map("versions"),
            sentinels=r.objects("sentinels", SentinelState._read),
            groups=r.objects("groups", GroupState._read),
            sidecars=r.objects("sidecars", SidecarState._read),
            failovers=r.objects("failovers", FailoverEvent._read),
        )


# --------------------------------------------------------------------------- /events


@dataclass(frozen=True)
class EventsDocument:
    """``GET /events?n=N``: the last N failover timelines, oldest first."""

    failovers: tuple[FailoverEvent, ...]

    def to_json(self) -> dict[str, Any]:
        return {"failovers": [f.to_json() for f in self.failovers]}

    @classmethod
    def from_json(cls, data: object) -> EventsDocument:
        """Read an ``/events`` body; :class:`AdminDocumentError` names the first bad field."""
        return cls(_Reader(data, "events").objects("failovers", FailoverEvent._read))
