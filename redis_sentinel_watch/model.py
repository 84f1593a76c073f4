"""Immutable values that describe what the Sentinels told us and what we concluded.

Everything here is a frozen dataclass so that a topology can be compared, hashed,
handed across tasks and kept as "the last good answer" without anyone mutating it
behind our back. Nothing in this module performs I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Address",
    "AddressError",
    "Dissent",
    "GroupTopology",
    "GroupView",
    "Health",
    "ReplicaEntry",
    "ReplicaState",
    "ReplicaSync",
    "SentinelView",
    "Topology",
]

#: Redis' default ``replica-priority``
DEFAULT_REPLICA_PRIORITY = 100


class AddressError(ValueError):
    """A ``host:port`` string could not be parsed; the message says why."""


@dataclass(frozen=True, order=True)
class Address:
    """A TCP endpoint. ``str()`` gives the canonical ``host:port`` (IPv6 in brackets)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not self.host:
            raise AddressError("empty host")
        if not 0 <= self.port <= 65535:  # 0 = "any free port" when binding
            raise AddressError(f"port {self.port} out of range 1-65535")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1, ``::ffff:127.x.y.z`` and ``localhost``."""
        ip = _ip(self.identity()[0])
        return ip is not None and ip.is_loopback

    @property
    def is_wildcard(self) -> bool:
        """True for ``0.0.0.0`` and ``::`` (a listener bound to every address)."""
        ip = _ip(self.identity()[0])
        return ip is not None and ip.is_unspecified

    @property
    def is_ip(self) -> bool:
        """True when the host is an IP literal (nothing to resolve)."""
        return _ip(self.host) is not None

    def identity(self) -> tuple[str, int]:
        """The one rule for "same endpoint", as a comparable key: (host, port).

        Spellings of one endpoint get one key, without DNS: ``localhost`` is
        ``127.0.0.1``; an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is its
        IPv4 address; other IP literals are in canonical form (``::0:1`` is
        ``::1``); host names are case-folded, without a trailing dot. Two
        different host names that resolve to one address stay different here:
        resolving is I/O, and this module does none.
        """
        host = self.host.lower().rstrip(".") or self.host
        if host == "localhost":
            return ("127.0.0.1", self.port)
        ip = _ip(host)
        if ip is None:
            return (host, self.port)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return (str(ip), self.port)

    def same_endpoint(self, other: Address) -> bool:
        """Whether ``self`` and ``other`` name the same endpoint (see :meth:`identity`)."""
        return self.identity() == other.identity()

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; raise :class:`AddressError` naming the problem."""
        if not isinstance(text, str):
            raise AddressError(f"expected a 'host:port' string, got {type(text).__name__}")
        raw = text.strip()
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0 or raw[end + 1 : end + 2] != ":":
                raise AddressError(f"{text!r} is not '[ipv6]:port'")
            host, port_text = raw[1:end], raw[end + 2 :]
        else:
            host, sep, port_text = raw.rpartition(":")
            if not sep:
                raise AddressError(f"{text!r} is not 'host:port' (no port)")
            if ":" in host:
                raise AddressError(f"{text!r}: write IPv6 addresses as '[addr]:port'")
        if not host:
            raise AddressError(f"{text!r} has no host")
        # isdigit() alone accepts '²' (int() then raises) and '٣٣' (int() reads 33)
        if not (port_text.isascii() and port_text.isdigit()):
            raise AddressError(f"{text!r}: port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise AddressError(f"{text!r}: port {port} out of range 1-65535")
        return cls(host, port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class ReplicaEntry:
    """One replica as a Sentinel lists it in ``SENTINEL REPLICAS``, flags and all.

    ``link_ok`` is Sentinel's ``master-link-status``, as of its last ``INFO`` of the
    replica: up to 10 s old (Sentinel's INFO period), so a replica restarted a
    moment ago can still show the ``ok`` of before its restart.
    """

    address: Address
    flags: frozenset[str] = frozenset({"slave"})
    priority: int = DEFAULT_REPLICA_PRIORITY
    link_ok: bool = True

    @property
    def down(self) -> bool:
        """Sentinel flags it down or disconnected: it will not promote it."""
        return bool(self.flags & {"s_down", "o_down", "disconnected"})


@dataclass(frozen=True)
class GroupView:
    """What one Sentinel said about one master group at one poll.

    ``primary`` is the address Sentinel currently lists for the master;
    ``config_epoch`` is Sentinel's epoch for that configuration (higher wins);
    ``primary_down`` is true when Sentinel flags the master s_down/o_down;
    ``failover_in_progress`` when it flags ``failover_in_progress`` (only the
    Sentinel leading a failover does); ``promoted`` is the replica that Sentinel
    flags ``promoted``, i.e. the one it selected to become the new primary;
    ``failover_timeout_ms`` is the group's ``failover-timeout`` and
    ``down_after_ms`` its ``down-after-milliseconds`` (0 if unknown).
    """

    group: str
    primary: Address
    config_epoch: int
    replicas: tuple[Address, ...] = ()
    primary_down: bool = False
    failover_in_progress: bool = False
    promoted: Address | None = None
    failover_timeout_ms: int = 0
    down_after_ms: int = 0
    drained: tuple[Address, ...] = ()  # replicas with replica-priority 0 (never promoted)
    #: every replica in ``SENTINEL REPLICAS``, down ones included (() when not asked)
    replica_entries: tuple[ReplicaEntry, ...] = ()


@dataclass(frozen=True)
class SentinelView:
    """One Sentinel's answer at one poll, or the fact that it did not answer.

    ``groups`` maps group name to :class:`GroupView`. ``reachable`` is false when
    the Sentinel could not be asked; ``tilt`` when it reported TILT mode (its
    judgement is then unreliable, so the agreement counts it less).
    """

    sentinel: Address
    reachable: bool
    groups: dict[str, GroupView] = field(default_factory=dict)
    tilt: bool = False
    error: str | None = None

    def __hash__(self) -> int:  # dict field: hash by identity of the sentinel and answer
        return hash((self.sentinel, self.reachable, tuple(sorted(self.groups.items()))))


class Health(StrEnum):
    """How sure we are about a group's primary."""

    OK = "ok"
    DEGRADED = "degraded"  # no agreement now; keeping the last good primary
    UNKNOWN = "unknown"  # never had an agreed primary


class ReplicaSync(StrEnum):
    """Whether a replica holds the primary's data, i.e. whether promoting it loses none.

    Sentinel promotes a replica that has just restarted and not yet synced as
    readily as a synced one (see ``docs/sentinel.md``, "the empty-replica
    trap"), so this is judged from the replica's own ``INFO replication`` as
    well as from Sentinel's view (:mod:`redis_sentinel_watch.replica_sync`).
    """

    SYNCED = "synced"  # replicates the primary, link up, no sync in progress
    UNSYNCED = "unsynced"  # Sentinel may promote it, but it lacks the primary's data
    DOWN = "down"  # Sentinel flags it s_down/o_down/disconnected: it will not promote it
    UNKNOWN = "unknown"  # not asked yet, or it does not answer us


@dataclass(frozen=True, order=True)
class ReplicaState:
    """One replica of a group and its :class:`ReplicaSync`; ``detail`` says why."""

    address: Address
    sync: ReplicaSync
    detail: str = ""


@dataclass(frozen=True)
class Dissent:
    """One Sentinel whose view of a group differs from the majority's.

    ``reasons`` says how: ``other-primary`` (it names another node),
    ``higher-epoch`` (its config epoch is above the majority's: a rogue or
    misconfigured Sentinel, or a failover the others have not heard of) and
    ``tilt`` (it is in TILT mode and does not vote). ``primary``/``epoch`` are
    what it says (None when it does not report the group), ``majority_*`` what
    the majority says. ``since`` is the ``time.monotonic()`` of the first poll
    that showed this disagreement; it takes no part in equality, so a
    disagreement that stays the same compares equal from poll to poll.
    """

    sentinel: Address
    group: str
    reasons: tuple[str, ...]
    primary: Address | None
    epoch: int | None
    majority_primary: Address
    majority_epoch: int
    since: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class GroupTopology:
    """The concluded state of one master group.

    ``primary`` is None only when no primary was ever agreed on. ``agreeing``
    counts Sentinels that confirmed ``primary`` at ``config_epoch`` out of
    ``sentinels`` configured. ``provisional`` is true while ``primary`` is a
    replica that the failover leader promoted and that reports ``master``
    itself, but that a majority of Sentinels has not confirmed yet (see
    :func:`redis_sentinel_watch.agreement.decide_group`); ``config_epoch`` is
    then still the epoch of the primary it replaced.
    """

    name: str
    primary: Address | None
    replicas: tuple[Address, ...] = ()
    config_epoch: int = 0
    agreeing: int = 0
    sentinels: int = 0
    health: Health = Health.UNKNOWN
    reason: str = ""
    provisional: bool = False
    drained: tuple[Address, ...] = ()  # replicas an operator drained (replica-priority 0)
    #: Sentinels that have disagreed with the majority for longer than a failover's
    #: catch-up (see :func:`redis_sentinel_watch.agreement.assess_dissent`)
    dissent: tuple[Dissent, ...] = ()
    #: every disagreement seen in the last poll, reported or not yet; carried from one
    #: decision to the next so a disagreement's ``since`` survives (not compared)
    dissent_seen: tuple[Dissent, ...] = field(default=(), compare=False)
    #: every replica Sentinel lists (down ones too) and whether it is synced; () until
    #: the first check (see :mod:`redis_sentinel_watch.replica_sync`)
    replica_states: tuple[ReplicaState, ...] = ()

    @property
    def synced(self) -> tuple[Address, ...]:
        """Replicas that hold the primary's data."""
        return tuple(r.address for r in self.replica_states if r.sync is ReplicaSync.SYNCED)

    @property
    def promotable(self) -> tuple[Address, ...]:
        """Synced replicas that are not drained: a failover to one of them loses no data."""
        return tuple(r for r in self.synced if r not in self.drained)

    @property
    def routing_key(self) -> tuple[str, Address | None]:
        """The part of the group that decides where sidecars send traffic."""
        return (self.name, self.primary)


@dataclass(frozen=True)
class Topology:
    """All groups, keyed by name. Two topologies with the same routing are equal for xDS."""

    groups: tuple[GroupTopology, ...] = ()

    def group(self, name: str) -> GroupTopology | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def primaries(self) -> dict[str, Address | None]:
        """Group name → current primary (or None), the only input xDS resources need."""
        return {g.name: g.primary for g in self.groups}
