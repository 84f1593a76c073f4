"""What a newly decided :class:`Topology` changed: log lines and :class:`PrimaryChange` values.

The watcher decides a topology; everything that follows from comparing it
with the one published before (a group's health changing, a Sentinel
starting or stopping to dissent, a provisional primary confirmed, a primary
changed and since when) is told here, once per change, so the loop in
:mod:`.watcher` reads as "poll, decide, publish" and the wording of those
events has one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from .first_signs import Incident
from .model import Address, Dissent, GroupTopology, Health, Topology

__all__ = ["Listener", "PrimaryChange", "primary_changes"]

log = structlog.get_logger("redis_sentinel_watch")


@dataclass(frozen=True)
class PrimaryChange:
    """A group's published primary changed. Times are ``time.monotonic()`` seconds.

    ``provisional`` is true when the new primary was published on the failover
    leader's promotion before a Sentinel majority confirmed it.
    """

    group: str
    old: Address | None
    new: Address | None
    trigger: str  # the Sentinel event that started it, or "poll"
    first_sign_at: float | None
    switched_at: float
    epoch: int
    provisional: bool = False


Listener = Callable[[Topology, Sequence[PrimaryChange]], None]


def primary_changes(
    old: Topology, new: Topology, take_sign: Callable[[str], Incident | None], now: float
) -> list[PrimaryChange]:
    """Log what ``new`` changed against ``old``; return its primary changes.

    ``take_sign(group)`` hands over (and forgets) the first sign of the group's
    incident, so that each change is timed from its own first sign.
    """
    changes: list[PrimaryChange] = []
    for g in new.groups:
        before = old.group(g.name)
        _log_dissent(before, g)
        if before is not None and before.health != g.health:
            level = log.info if g.health is Health.OK else log.warning
            level(
                "group.health",
                group=g.name,
                health=g.health.value,
                reason=g.reason,
                agreeing=g.agreeing,
                sentinels=g.sentinels,
                primary=str(g.primary) if g.primary else None,
            )
        if before is None:
            continue
        if before.primary == g.primary:
            if before.provisional and not g.provisional:
                log.info(
                    "primary.confirmed",
                    group=g.name,
                    primary=str(g.primary),
                    epoch=g.config_epoch,
                    agreeing=g.agreeing,
                    sentinels=g.sentinels,
                )
            continue
        incident = take_sign(g.name)
        sign_at, trigger = (incident.at, incident.trigger) if incident else (None, "poll")
        change = PrimaryChange(
            g.name,
            before.primary,
            g.primary,
            trigger,
            sign_at,
            now,
            g.config_epoch,
            g.provisional,
        )
        changes.append(change)
        log.info(
            "primary.changed" if before.primary else "primary.discovered",
            group=g.name,
            old=str(before.primary) if before.primary else None,
            new=str(g.primary),
            epoch=g.config_epoch,
            agreeing=g.agreeing,
            sentinels=g.sentinels,
            provisional=g.provisional,
            trigger=trigger,
            since_first_sign_ms=round((now - sign_at) * 1000, 1) if sign_at is not None else None,
        )
    return changes


def _dissent_fields(d: Dissent) -> dict[str, object]:
    return {
        "group": d.group,
        "sentinel": str(d.sentinel),
        "reasons": list(d.reasons),
        "says": str(d.primary) if d.primary else None,
        "epoch": d.epoch,
        "majority": str(d.majority_primary),
        "majority_epoch": d.majority_epoch,
    }


def _log_dissent(before: GroupTopology | None, after: GroupTopology) -> None:
    """Log each Sentinel's disagreement with the majority once per change."""
    old = {d.sentinel: d for d in before.dissent} if before is not None else {}
    new = {d.sentinel: d for d in after.dissent}
    for sentinel, d in new.items():
        if old.get(sentinel) != d:
            log.warning("sentinel.dissent", **_dissent_fields(d))
    for sentinel, d in old.items():
        if sentinel not in new:
            log.info("sentinel.dissent_cleared", group=d.group, sentinel=str(sentinel))
