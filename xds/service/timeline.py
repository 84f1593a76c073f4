"""The failover timeline: one record per primary change, from first sign to last ACK.

An on-call engineer woken by a failover wants one line that says what
happened: which group, from which primary to which, what started it, how long
each stage took, and whether every sidecar follows the new primary. Every
primary change, planned or not, ends in exactly one ``failover.completed``
event carrying that record; the stages before it are their own events
(``failover.detected`` and ``primary.changed`` from the watcher,
``xds.snapshot`` from the service). The last records are kept for
``/events`` and ``sentinel-xds events``.

"Has a sidecar ACKed the new primary?" is answered from what it ACKed, not
from snapshot versions: the ClusterLoadAssignment names we sent it embed the
primary (``redis/<group>/<host:port>``, see :mod:`xds.resources.redis_group`), so a
sidecar whose Cluster and endpoints are both ACKed and whose endpoint names
say the new primary routes there. That stays true whichever snapshot (or
profile) each sidecar is served, and it skips sidecars that do not receive
the group at all.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import structlog

from redis_sentinel_watch import Address, PrimaryChange
from xds.ads.sidecars import Sidecar, Sidecars, SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT
from xds.resources.redis_group import NO_PRIMARY
from xds.service.notices import DrainNotices

__all__ = [
    "DrainNotices",
    "FailoverRecord",
    "Timeline",
    "acked_primaries",
    "classify",
]

log = structlog.get_logger("xds.timeline")

#: how long a failover is followed before it is recorded with the ACKs it got
ACK_WAIT_S = 30.0
KEEP = 100


def classify(sign: str, drained: bool) -> str:
    """What started a failover: ``drain``, ``reconcile`` or ``sentinel-event``.

    ``sign`` is the watcher's trigger: the first Sentinel event seen for the
    group (``+odown``, ``+try-failover`` …) or ``poll…`` when only a poll
    showed the change (the events were missed, e.g. across a reconnect).
    """
    if drained:
        return "drain"
    if sign.startswith("poll"):
        return "reconcile"
    return "sentinel-event"


def acked_primaries(sidecar: Sidecar) -> dict[str, str]:
    """Group → primary this sidecar has ACKed (Cluster and endpoints both ACKed).

    Empty while either type is unACKed, NACKed or never requested: then the
    sidecar's routing is not known to match anything we sent.
    """
    cds, eds = sidecar.types.get(CLUSTER), sidecar.types.get(ENDPOINT)
    if cds is None or eds is None:
        return {}
    if cds.state() is not SyncState.SYNCED or eds.state() is not SyncState.SYNCED:
        return {}
    found: dict[str, set[str]] = {}
    for name in eds.sent_names:
        parts = name.split("/", 2)  # group names cannot contain '/'
        if len(parts) == 3 and parts[0] == "redis" and parts[2] != NO_PRIMARY:
            found.setdefault(parts[1], set()).add(parts[2])
    # two endpoint sets for one group (old and new both still held): not switched yet
    return {group: ",".join(sorted(primaries)) for group, primaries in found.items()}


class FailoverObserver(Protocol):
    def failover_completed(
        self, trigger: str, phases_ms: Mapping[str, float | None] | None = None
    ) -> None: ...


@dataclass
class FailoverRecord:
    """One primary change from first sign to last ACK (the on-call timeline).

    Durations are milliseconds from the first sign (the first Sentinel event
    or poll that showed trouble; the switch itself when there was none). It is
    a sign of *this* failover: a ``+sdown`` taken back by ``-sdown``, or one
    nothing supported for a few down-after periods, is not charged to it (see
    :mod:`redis_sentinel_watch.first_signs`). ``at`` is the wall clock of the
    switch, so ``at - detect_to_switch_ms / 1000`` is the first sign's.
    ``switch_to_push_ms`` is from our switch to the last sidecar's push.
    """

    group: str
    old: str | None
    new: str | None
    trigger: str  # drain | sentinel-event | reconcile
    sign: str  # the first Sentinel event (or poll) that started it
    epoch: int
    at: float = field(default_factory=time.time)  # wall clock of the switch
    detect_to_switch_ms: float | None = None
    detect_to_push_ms: float | None = None
    switch_to_push_ms: float | None = None
    detect_to_acked_ms: float | None = None  # to the last sidecar's ACK
    acked: int = 0
    sidecars: int = 0
    superseded: bool = False  # another primary change came before every ACK

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Timeline:
    """Follows each primary change to the last sidecar ACK and keeps the records."""

    def __init__(
        self,
        sidecars: Sidecars,
        observer: FailoverObserver | None = None,
        current_primary: Callable[[str], Address | None] | None = None,
        ack_wait_s: float = ACK_WAIT_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` must be the clock of :class:`PrimaryChange` times and of the
        sidecars' push/ACK times (``time.monotonic``); tests inject both clocks."""
        self._clock = clock
        self._wall = wall
        self._sidecars = sidecars
        self._observer = observer
        self._current = current_primary
        self._ack_wait_s = ack_wait_s
        self.notices = DrainNotices()
        self._records: deque[FailoverRecord] = deque(maxlen=KEEP)

    def recent(self, n: int = 20) -> list[FailoverRecord]:
        """The last ``n`` completed failovers, oldest first."""
        return list(self._records)[-n:] if n > 0 else []

    def start(self, change: PrimaryChange) -> FailoverRecord:
        """Open the record at the switch (synchronously, so the drain notice is matched now)."""
        start = change.first_sign_at if change.first_sign_at is not None else change.switched_at
        record = FailoverRecord(
            group=change.group,
            old=str(change.old) if change.old else None,
            new=str(change.new) if change.new else None,
            trigger=classify(change.trigger, self.notices.take(change.group, change.old)),
            sign=change.trigger,
            epoch=change.epoch,
            # the switch's wall clock, so that `at - detect_to_switch_ms` is the first sign's
            at=self._wall() - (self._clock() - change.switched_at),
            detect_to_switch_ms=_ms(change.switched_at - start),
        )
        return record

    async def follow(self, change: PrimaryChange, record: FailoverRecord) -> FailoverRecord:
        """Wait until every sidecar carrying the group ACKed the new primary (or time out)."""
        group, new = change.group, str(change.new)
        start = change.first_sign_at if change.first_sign_at is not None else change.switched_at

        def superseded() -> bool:
            return self._current is not None and self._current(group) != change.new

        # Sidecars still to ACK, checked from the front only: each wake-up (one per batch
        # of ACKs) drops the ones that are done and stops at the first that is not, so a
        # failover over N sidecars costs O(N) checks in all, not O(N) per ACK.
        waiting = deque(self._carrying(group))

        def settled() -> bool:
            while waiting and (
                not self._sidecars.is_open(waiting[0])
                or acked_primaries(waiting[0]).get(group) == new
            ):
                waiting.popleft()
            return not waiting or superseded()

        await self._sidecars.wait_for(settled, self._ack_wait_s)
        carrying = self._carrying(group)
        done = [s for s in carrying if acked_primaries(s).get(group) == new]
        record.acked, record.sidecars = len(done), len(carrying)
        record.superseded = superseded()
        pushes = [t for s in done if (t := s.types[CLUSTER].sent_at) is not None]
        acks = [
            max(s.types[CLUSTER].acked_at or 0.0, s.types[ENDPOINT].acked_at or 0.0) for s in done
        ]
        if pushes:
            record.detect_to_push_ms = _ms(max(pushes) - start)
            record.switch_to_push_ms = _ms(max(pushes) - change.switched_at)
        record.detect_to_acked_ms = _ms((max(acks) if acks else self._clock()) - start)
        self._records.append(record)
        if self._observer is not None:
            self._observer.failover_completed(
                record.trigger,
                {
                    "detect_to_switch": record.detect_to_switch_ms,
                    "detect_to_push": record.detect_to_push_ms,
                    "detect_to_acked": record.detect_to_acked_ms,
                },
            )
        level = log.info if record.acked == record.sidecars else log.warning
        level("failover.completed", **record.as_dict())
        return record

    def _carrying(self, group: str) -> list[Sidecar]:
        """Sidecars that receive ``group``: synced with it, or not synced yet (in flight)."""
        out = []
        for s in self._sidecars.all():
            cds = s.types.get(CLUSTER)
            if cds is None or not cds.requested:
                continue
            if not _synced(s) or group in acked_primaries(s):
                out.append(s)
        return out


def _synced(sidecar: Sidecar) -> bool:
    states = [sidecar.types.get(t) for t in (CLUSTER, ENDPOINT)]
    return all(ts is not None and ts.state() is SyncState.SYNCED for ts in states)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
