"""The watcher loop: poll every Sentinel, decide, publish a new :class:`Topology`.

Thin on purpose: the decision lives in :mod:`.agreement`, the I/O behind
:class:`.io.SentinelIO`. Pub/sub events only *trigger* an immediate poll (and a
short burst of fast polls); the poll is the source of truth, because a
pub/sub message can be lost on a reconnect while a poll cannot lie about the
present.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from redis.backoff import EqualJitterBackoff

from .agreement import candidates_to_verify, decide_group
from .errors import UnreachableError
from .io import SentinelIO
from .model import Address, GroupTopology, Health, SentinelView, Topology
from .replies import SentinelEvent

__all__ = ["PrimaryChange", "Watcher"]

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


@dataclass(frozen=True)
class PrimaryChange:
    """A group's published primary changed. Times are ``time.monotonic()`` seconds."""

    group: str
    old: Address | None
    new: Address | None
    trigger: str  # the Sentinel event that started it, or "poll"
    first_sign_at: float | None
    switched_at: float
    epoch: int


Listener = Callable[[Topology, Sequence[PrimaryChange]], None]


class Watcher:
    """Watches ``sentinels`` for ``groups`` and calls ``on_change`` with each new topology."""

    def __init__(
        self,
        io: SentinelIO,
        sentinels: Sequence[Address],
        groups: Sequence[str],
        *,
        poll_interval_s: float = 1.0,
        fast_poll_interval_s: float = 0.05,
        fast_window_s: float = 20.0,
        role_check: bool = True,
    ) -> None:
        self._io = io
        self.sentinels = tuple(sentinels)
        self.groups = tuple(groups)
        self._poll_interval = poll_interval_s
        self._fast_interval = fast_poll_interval_s
        self._fast_window = fast_window_s
        self._role_check = role_check
        self._kick = asyncio.Event()
        self._fast_until = 0.0
        self._first_sign: dict[str, tuple[float, str]] = {}
        self._reachable: dict[Address, bool] = {}
        self._ignored_groups: set[str] = set()
        self._listeners: list[Listener] = []
        self.views: tuple[SentinelView, ...] = ()
        self.topology = Topology(
            tuple(
                GroupTopology(name=g, primary=None, sentinels=len(self.sentinels))
                for g in self.groups
            )
        )
        self.polls = 0
        self.first_poll_done = asyncio.Event()

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(topology, changes)`` after every change of topology."""
        self._listeners.append(listener)

    @property
    def reachable_sentinels(self) -> int:
        return sum(1 for ok in self._reachable.values() if ok)

    def poke(self, reason: str = "manual") -> None:
        """Poll now and keep polling fast for a while (a failover may be under way)."""
        self._fast_until = time.monotonic() + self._fast_window
        self._kick.set()

    async def run(self) -> None:
        """Poll forever (until cancelled), with one event listener per Sentinel."""
        listeners = [asyncio.create_task(self._listen(s)) for s in self.sentinels]
        try:
            while True:
                await self.poll_once()
                await self._sleep()
        finally:
            for task in listeners:
                task.cancel()
            for task in listeners:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _sleep(self) -> None:
        now = time.monotonic()
        interval = self._fast_interval if now < self._fast_until else self._poll_interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), interval)
        self._kick.clear()

    async def poll_once(self) -> Topology:
        """One round: ask every Sentinel, verify candidates, decide, publish if changed."""
        views = await asyncio.gather(*(self._io.query(s, self.groups) for s in self.sentinels))
        self.views = tuple(views)
        self.polls += 1
        self._note_reachability(views)
        self._note_signs(views)
        published = self.topology.primaries()
        roles: dict[Address, str] = {}
        if self._role_check:
            wanted = set(
                candidates_to_verify(views, self.groups, len(self.sentinels), published).values()
            )
            answers = await asyncio.gather(*(self._io.role(a) for a in wanted))
            roles = dict(zip(wanted, answers, strict=True))
        groups = tuple(
            decide_group(
                g, views, len(self.sentinels), self.topology.group(g), roles, self._role_check
            )
            for g in self.groups
        )
        new = Topology(groups)
        self._publish(new)
        self.first_poll_done.set()
        return new

    def _publish(self, new: Topology) -> None:
        old = self.topology
        if new == old:
            return
        now = time.monotonic()
        changes: list[PrimaryChange] = []
        for g in new.groups:
            before = old.group(g.name)
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
            if before is None or before.primary == g.primary:
                continue
            sign_at, trigger = self._first_sign.pop(g.name, (None, "poll"))
            change = PrimaryChange(
                g.name, before.primary, g.primary, trigger, sign_at, now, g.config_epoch
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
                trigger=trigger,
                since_first_sign_ms=round((now - sign_at) * 1000, 1) if sign_at else None,
            )
        self.topology = new
        for listener in self._listeners:
            listener(new, changes)

    def _note_reachability(self, views: Sequence[SentinelView]) -> None:
        for v in views:
            before = self._reachable.get(v.sentinel)
            if before is not v.reachable:
                self._reachable[v.sentinel] = v.reachable
                if v.reachable:
                    log.info("sentinel.reachable", sentinel=str(v.sentinel), tilt=v.tilt)
                else:
                    log.warning("sentinel.unreachable", sentinel=str(v.sentinel), error=v.error)
            if v.reachable and v.error:
                log.warning("sentinel.reply_ignored", sentinel=str(v.sentinel), error=v.error)
            for name in v.groups:
                if name not in self.groups and name not in self._ignored_groups:
                    self._ignored_groups.add(name)
                    log.warning(
                        "sentinel.group_ignored",
                        group=name,
                        sentinel=str(v.sentinel),
                        hint="group is monitored by Sentinel but not in the config",
                    )

    def _note_signs(self, views: Sequence[SentinelView]) -> None:
        """A poll that shows the primary down counts as a first sign too."""
        for v in views:
            for name, gv in v.groups.items():
                if (gv.primary_down or gv.failover_in_progress) and name not in self._first_sign:
                    self._sign(name, "poll:primary-down" if gv.primary_down else "poll:failover")

    def _sign(self, group: str, trigger: str) -> None:
        if group in self._first_sign or group not in self.groups:
            return
        self._first_sign[group] = (time.monotonic(), trigger)
        log.info("failover.detected", group=group, trigger=trigger)
        self.poke(trigger)

    def _on_event(self, event: SentinelEvent) -> None:
        log.debug(
            "sentinel.event",
            sentinel=str(event.sentinel),
            channel=event.channel,
            payload=event.payload,
        )
        current = self.topology.group(event.group) if event.group else None
        about_primary = (
            current is not None and event.instance is not None and event.instance == current.primary
        )
        if (
            event.group
            and event.channel in FAILOVER_SIGNS
            and (about_primary or event.channel not in {"+sdown", "+odown"})
        ):
            self._sign(event.group, event.channel)
        else:
            self.poke(event.channel)

    async def _listen(self, sentinel: Address) -> None:
        """Follow one Sentinel's events; reconnect with jittered backoff, logging once per state."""
        backoff = EqualJitterBackoff(cap=5.0, base=0.1)
        failures = 0
        while True:
            try:
                async for event in self._io.events(sentinel):
                    if failures:
                        log.info("sentinel.events.resumed", sentinel=str(sentinel))
                        failures = 0
                        self.poke("events-resumed")
                    self._on_event(event)
                raise UnreachableError(f"sentinel {sentinel}: event stream ended")
            except UnreachableError as exc:
                if failures == 0:
                    log.warning("sentinel.events.lost", sentinel=str(sentinel), error=str(exc))
                    self.poke("events-lost")
                failures += 1
                await asyncio.sleep(backoff.compute(failures))
