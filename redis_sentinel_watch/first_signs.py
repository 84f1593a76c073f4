"""Which sign started a failover, and when: the start of every failover timeline.

The on-call timeline, ``failover.completed`` and the failover-phase metrics
measure each primary change from its *first sign*: the first Sentinel event
(``+sdown``, ``+try-failover`` …) or poll that showed trouble with the
published primary. That sign must belong to the failover it is charged to.
A ``+sdown`` that the Sentinels take back with ``-sdown`` before any failover
starts was a blip (a slow fork, a network hiccup); if it stayed recorded, the
next failover, a planned one hours later, would be logged as taking hours.

So a sign opens an :class:`Incident`, and the incident ends without a
failover when:

* every Sentinel that reported the primary down takes it back (``-sdown``, or
  a poll sent after it showed the primary down that shows it up), and no sign
  of a failover itself (``+try-failover``, ``+selected-slave``, a leader's
  ``failover_in_progress`` …) was seen; or
* nothing has supported it (no event, no poll still showing the primary down
  or a failover running) for :data:`SIGN_EXPIRY_FACTOR` down-after periods,
  plus twice the failover-timeout once a failover was seen (Sentinel retries
  a failed one after that long, and a retry is the same incident).

A primary that stays down keeps its incident open (every poll supports it),
so a failover that finally follows is charged from when it went down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from .model import Address

__all__ = ["DEFAULT_DOWN_AFTER_MS", "DOWN_SIGNS", "SIGN_EXPIRY_FACTOR", "FirstSigns", "Incident"]

log = structlog.get_logger("redis_sentinel_watch")

#: Signs that only say "a Sentinel sees the primary down"; every other sign says that a
#: failover itself is running. A down-only sign is taken back by ``-sdown``.
DOWN_SIGNS = frozenset({"+sdown", "+odown", "poll:primary-down"})

#: A first sign that nothing has supported for this many down-after periods belongs to
#: no failover.
SIGN_EXPIRY_FACTOR = 3

#: Sentinel's default ``down-after-milliseconds``, assumed until a poll reports the group's.
DEFAULT_DOWN_AFTER_MS = 30_000

#: group → (seconds a down-only incident lives unsupported, seconds added once a failover
#: was seen); see :meth:`FirstSigns.expired`
Limits = Callable[[str], tuple[float, float]]


@dataclass
class Incident:
    """The first sign of what may become a failover of one group, and what still supports it.

    ``down`` maps each Sentinel that reports the published primary down to when we
    learned it; ``failing_over`` is set once a sign of a failover itself was seen.
    ``last_at`` is the latest sign that supported it. Times are the clock's seconds.
    """

    at: float
    trigger: str
    last_at: float
    down: dict[Address, float] = field(default_factory=dict)
    failing_over: bool = False


class FirstSigns:
    """The open incident of every group; ``clock`` is ``time.monotonic`` outside tests."""

    def __init__(self, clock: Callable[[], float], limits: Limits) -> None:
        self._clock = clock
        self._limits = limits
        self._open: dict[str, Incident] = {}
        self._up_at: dict[tuple[str, Address], float] = {}  # last -sdown of the primary

    def get(self, group: str) -> Incident | None:
        return self._open.get(group)

    def sign(self, group: str, trigger: str, sentinel: Address | None = None) -> bool:
        """Note a sign of trouble with ``group``'s primary; True when it opened an incident."""
        now = self._clock()
        incident = self._live(group, now)
        opened = incident is None
        if incident is None:
            incident = self._open[group] = Incident(now, trigger, now)
            log.info("failover.detected", group=group, trigger=trigger)
        incident.last_at = now
        if trigger not in DOWN_SIGNS:
            incident.failing_over = True
        elif sentinel is not None:
            incident.down.setdefault(sentinel, now)
        return opened

    def poll(
        self, group: str, sentinel: Address, *, down: bool, failing_over: bool, sent_at: float
    ) -> bool:
        """What one Sentinel's poll (sent at ``sent_at``) says about the published primary.

        Down: a sign, unless a ``-sdown`` from that Sentinel arrived after the poll was
        sent (the poll is older news). Up, having been reported down before the poll
        was sent: that Sentinel's ``-sdown`` was lost. True when an incident opened.
        """
        opened = False
        if down and self._up_at.get((group, sentinel), sent_at) <= sent_at:
            opened = self.sign(group, "poll:primary-down", sentinel)
        if failing_over:
            opened = self.sign(group, "poll:failover", sentinel) or opened
        incident = self._open.get(group)
        if not down and incident is not None:
            seen_down = incident.down.get(sentinel)
            if seen_down is not None and seen_down < sent_at:
                self.primary_up(group, sentinel, "poll shows the primary up")
        return opened

    def primary_up(self, group: str, sentinel: Address, why: str) -> None:
        """``sentinel`` no longer sees the primary down (``-sdown``): a down-only incident
        it was the last to support is over (a blip, not a failover)."""
        now = self._clock()
        self._up_at[(group, sentinel)] = now
        incident = self._open.get(group)
        if incident is None:
            return
        incident.down.pop(sentinel, None)
        if not incident.down and not incident.failing_over:
            del self._open[group]
            _cleared(group, incident, why, now)

    def take(self, group: str) -> Incident | None:
        """The primary changed: the incident that started it (None when it had none)."""
        incident = self._live(group, self._clock())
        self._open.pop(group, None)
        return incident

    def expired(self, group: str, incident: Incident, now: float) -> bool:
        """Has nothing supported ``incident`` for longer than its limit?"""
        down_only, retry = self._limits(group)
        bound = down_only + (retry if incident.failing_over else 0.0)
        return now - incident.last_at > bound

    def _live(self, group: str, now: float) -> Incident | None:
        incident = self._open.get(group)
        if incident is not None and self.expired(group, incident, now):
            del self._open[group]
            _cleared(group, incident, "expired", now)
            return None
        return incident


def _cleared(group: str, incident: Incident, why: str, now: float) -> None:
    log.info(
        "failover.sign_cleared",
        group=group,
        sign=incident.trigger,
        reason=why,
        age_ms=round((now - incident.at) * 1000, 1),
        hint="not charged to a later failover",
    )
