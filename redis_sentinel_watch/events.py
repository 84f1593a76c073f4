"""Sentinel's pub/sub events, as the watcher uses them: triggers, never the truth.

A failover announces itself on every Sentinel's event channels long before a
poll would notice, so each Sentinel gets a listener that reconnects forever
(jittered backoff, logged once when lost and once when resumed) and hands
every event to the watcher. Which events count as the *first sign* of a
failover of the primary being published, and which take one back, is said
here; what the watcher then does about them is :meth:`.watcher.Watcher._on_event`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from redis.backoff import EqualJitterBackoff

from .errors import UnreachableError
from .model import Address, GroupTopology
from .replies import SentinelEvent

if TYPE_CHECKING:
    from .io import SentinelIO

__all__ = ["FAILOVER_SIGNS", "follow_events", "is_failover_sign", "is_primary_up"]

log = structlog.get_logger("redis_sentinel_watch")

#: Events that mean a failover may be under way for the group they name.
FAILOVER_SIGNS = frozenset(
    {
        "+sdown",
        "+odown",
        "+try-failover",
        "+elected-leader",
        "+selected-slave",
        "+failover-state-select-slave",
        "+failover-state-send-slaveof-noone",
        "+failover-state-wait-promotion",
        "+promoted-slave",
        "+switch-master",
    }
)


def is_failover_sign(event: SentinelEvent, current: GroupTopology | None) -> bool:
    """A failover sign about the primary we publish (``current`` is the group's topology).

    A ``+sdown`` of a replica, or the followers' ``+switch-master`` after we
    already switched, starts nothing new.
    """
    about_primary = (
        current is not None
        and event.master is not None
        and event.master == current.primary
        and (event.channel not in {"+sdown", "+odown"} or event.instance == current.primary)
    )
    return bool(event.group) and event.channel in FAILOVER_SIGNS and about_primary


def is_primary_up(event: SentinelEvent, current: GroupTopology | None) -> bool:
    """A ``-sdown`` of the primary we publish: a Sentinel takes its ``+sdown`` back."""
    return (
        bool(event.group)
        and event.channel == "-sdown"
        and current is not None
        and event.instance == current.primary
    )


async def follow_events(
    io: SentinelIO,
    sentinel: Address,
    on_event: Callable[[SentinelEvent], None],
    poke: Callable[[str], None],
) -> None:
    """Follow one Sentinel's events forever; reconnect with jittered backoff, logging once
    per state. ``poke(reason)`` asks for a poll now: events may have been missed."""
    backoff = EqualJitterBackoff(cap=5.0, base=0.1)
    failures = 0
    while True:
        try:
            async for event in io.events(sentinel):
                if failures:
                    log.info("sentinel.events.resumed", sentinel=str(sentinel))
                    failures = 0
                    poke("events-resumed")
                on_event(event)
            raise UnreachableError(f"sentinel {sentinel}: event stream ended")
        except Exception as exc:  # any failure: reconnect, never stop listening
            if failures == 0:
                log.warning(
                    "sentinel.events.lost",
                    sentinel=str(sentinel),
                    error=str(exc),
                    kind=type(exc).__name__,
                )
                poke("events-lost")
            failures += 1
            await asyncio.sleep(backoff.compute(failures))
