"""The watcher loop: poll every Sentinel, decide, publish a new :class:`Topology`.

Thin on purpose: the decisions live in :mod:`.agreement`, the I/O behind
:class:`.io.SentinelIO`. Pub/sub events only *trigger* work: an immediate poll
and a burst of fast polls, and, when the failover leader names the replica it
selected, a fast ``ROLE`` probe of that replica (react first, see
:func:`.agreement.decide_group`). The poll stays the source of truth, because
a pub/sub message can be lost on a reconnect while a poll cannot lie about the
present.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass

import structlog
from redis.backoff import EqualJitterBackoff

from .agreement import (
    Promotion,
    PromotionStatus,
    candidates_to_verify,
    decide_group,
    promotion_aborted_by,
    promotion_from_event,
    promotion_from_views,
    promotion_status,
)
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

#: A Sentinel must lag behind the published epoch for this many consecutive
#: polls before it is reported stale (the non-leaders always lag for a moment
#: during a failover; that is not worth a warning).
STALE_AFTER_POLLS = 3


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


@dataclass(frozen=True)
class _SentinelState:
    """What was last logged about one Sentinel, so each change is logged once."""

    reachable: bool
    tilt: bool = False
    error: str | None = None


class Watcher:
    """Watches ``sentinels`` for ``groups`` and calls ``on_change`` with each new topology.

    ``promotion_probe_interval_s`` is how often the replica selected by a
    failover leader is asked for its ``ROLE``; the probe stops after the
    group's Sentinel ``failover-timeout`` (``promotion_wait_s`` when unknown),
    which is when the leader itself gives up waiting. ``react_on_promotion``
    off means: switch only when a Sentinel majority agrees. ``fence_pause_ms``
    (0 = off) pauses writes on the primary being replaced as soon as the leader
    selects a replica (``CLIENT PAUSE ms WRITE``), for at most half the group's
    ``down-after-milliseconds``: a paused primary holds the Sentinels' hello
    ``PUBLISH`` and with it their ``PING`` on the same link, so a longer pause
    would make them think it is down (see ``docs/sentinel.md``).
    """

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
        react_on_promotion: bool = True,
        promotion_probe_interval_s: float = 0.02,
        promotion_wait_s: float = 10.0,
        fence_pause_ms: int = 0,
    ) -> None:
        self._io = io
        self.sentinels = tuple(sentinels)
        self.groups = tuple(groups)
        self._poll_interval = poll_interval_s
        self._fast_interval = fast_poll_interval_s
        self._fast_window = fast_window_s
        self._role_check = role_check
        self._react = react_on_promotion
        self._probe_interval = promotion_probe_interval_s
        self._promotion_wait = promotion_wait_s
        self._fence_ms = fence_pause_ms
        self._kick = asyncio.Event()
        self._fast_until = 0.0
        self._first_sign: dict[str, tuple[float, str]] = {}
        self._sentinel_state: dict[Address, _SentinelState] = {}
        self._stale_polls: dict[tuple[Address, str], int] = {}
        self._ignored_groups: set[str] = set()
        self._unknown_peers: dict[Address, frozenset[Address]] = {}
        self._listeners: list[Listener] = []
        self._undelivered = False  # a listener raised on the current topology: retry
        self._promotions: dict[str, Promotion] = {}
        self._promotion_seen_at: dict[str, float] = {}
        self._fenced: dict[str, Address] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._round = 0
        self._views_round = 0
        self._roles: dict[Address, str] = {}  # ROLE answers of the last poll
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
        return sum(1 for st in self._sentinel_state.values() if st.reachable)

    @property
    def promotions(self) -> dict[str, Promotion]:
        """Failovers being followed early, by group (a copy)."""
        return dict(self._promotions)

    def poke(self, reason: str = "manual") -> None:
        """Poll now and keep polling fast for a while (a failover may be under way)."""
        self._fast_until = time.monotonic() + self._fast_window
        self._kick.set()

    async def run(self) -> None:
        """Poll forever (until cancelled), with one event listener per Sentinel."""
        listeners = [asyncio.create_task(self._listen(s)) for s in self.sentinels]
        try:
            while True:
                try:
                    await self.poll_once()
                except Exception:  # one bad round must not end the watch for good
                    log.exception("watcher.poll_failed")
                await self._sleep()
        finally:
            tasks = [*listeners, *self._tasks]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _sleep(self) -> None:
        now = time.monotonic()
        interval = self._fast_interval if now < self._fast_until else self._poll_interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), interval)
        self._kick.clear()

    # ------------------------------------------------------------------ polling

    async def poll_once(self) -> Topology:
        """One round: ask every Sentinel, verify candidates, decide, publish if changed."""
        self._round += 1
        this_round = self._round
        views = await asyncio.gather(*(self._io.query(s, self.groups) for s in self.sentinels))
        self.views = tuple(views)
        self._views_round = this_round
        self.polls += 1
        self._note_sentinels(views)
        self._note_signs(views)
        if self._react:
            for g in self.topology.groups:
                self._consider(promotion_from_views(views, g, this_round))
        roles: dict[Address, str] = {}
        wanted: set[Address] = set()
        if self._role_check:
            published = self.topology.primaries()
            wanted |= set(
                candidates_to_verify(views, self.groups, len(self.sentinels), published).values()
            )
        # A provisional primary is asked every round: "slave" again means undone.
        wanted |= {g.primary for g in self.topology.groups if g.provisional and g.primary}
        if wanted:
            asked = tuple(wanted)
            answers = await asyncio.gather(*(self._io.role(a) for a in asked))
            roles = dict(zip(asked, answers, strict=True))
        self._roles = roles
        self._reconcile(roles)
        if self._undelivered:
            self._deliver(self.topology, ())
        self._note_stale(views)
        self.first_poll_done.set()
        return self.topology

    def _reconcile(self, roles: dict[Address, str], only: str | None = None) -> None:
        """Decide every group (or ``only`` one) from the latest poll, promotions and ``roles``.

        Between polls (a probe's answer) the other groups keep their topology:
        they have nothing new to decide from.
        """
        configured = len(self.sentinels)
        decided: list[GroupTopology] = []
        for g in self.groups:
            current = self.topology.group(g)
            if only is not None and g != only and current is not None:
                decided.append(current)
                continue
            promotion = self._promotions.get(g)
            if promotion is not None:
                status, why = promotion_status(
                    promotion, self.views, configured, roles, self._views_round
                )
                if status is not PromotionStatus.ACTIVE:
                    self._drop(g, status, why)
                    promotion = None
            decided.append(
                decide_group(
                    g,
                    self.views,
                    configured,
                    current,
                    roles,
                    self._role_check,
                    promotion=promotion,
                    views_round=self._views_round,
                )
            )
        self._publish(Topology(tuple(decided)))

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
            sign_at, trigger = self._first_sign.pop(g.name, (None, "poll"))
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
                since_first_sign_ms=round((now - sign_at) * 1000, 1) if sign_at else None,
            )
        self.topology = new
        self._deliver(new, changes)

    def _deliver(self, topology: Topology, changes: Sequence[PrimaryChange]) -> None:
        """Hand ``topology`` to every listener; one that raises is logged and retried.

        The topology is already ours at this point; a listener that failed (say the
        service could not build a snapshot) gets the same topology again after the
        next poll, so sidecars are never left on an old primary by one exception.
        """
        failed = False
        for listener in self._listeners:
            try:
                listener(topology, changes)
            except Exception:
                failed = True
                log.exception(
                    "watcher.listener_failed", listener=getattr(listener, "__name__", "?")
                )
        self._undelivered = failed

    # ------------------------------------------------------------------ react first

    def _consider(self, promotion: Promotion | None) -> None:
        """Start following a failover the leader announced (if it is new)."""
        if promotion is None or not self._react:
            return
        current = self._promotions.get(promotion.group)
        if current is not None and (current.candidate, current.replacing) == (
            promotion.candidate,
            promotion.replacing,
        ):
            return
        if current is not None:
            self._drop(promotion.group, PromotionStatus.ABORTED, "another replica was selected")
        self._promotions[promotion.group] = promotion
        self._promotion_seen_at[promotion.group] = time.monotonic()
        log.info(
            "failover.candidate",
            group=promotion.group,
            candidate=str(promotion.candidate),
            replacing=str(promotion.replacing),
            leader=str(promotion.leader) if promotion.leader else None,
            source=promotion.source,
        )
        self._sign(promotion.group, promotion.source)
        self._spawn(self._probe(promotion))
        if self._fence_ms > 0:
            self._fenced[promotion.group] = promotion.replacing
            self._spawn(self._fence(promotion))

    def _same(self, promotion: Promotion) -> Promotion | None:
        """The stored promotion if it is still the one ``promotion`` describes."""
        current = self._promotions.get(promotion.group)
        if current is None or (current.candidate, current.replacing) != (
            promotion.candidate,
            promotion.replacing,
        ):
            return None
        return current

    def _probe_bound(self, group: str) -> float:
        """How long to wait for the candidate: the Sentinels' failover-timeout, if known."""
        known = [
            v.groups[group].failover_timeout_ms
            for v in self.views
            if v.reachable and group in v.groups and v.groups[group].failover_timeout_ms
        ]
        return max(known) / 1000 if known else self._promotion_wait

    async def _probe(self, promotion: Promotion) -> None:
        """Ask the candidate's ROLE every few ms until it says master (bounded)."""
        started = time.monotonic()
        deadline = started + self._probe_bound(promotion.group)
        while time.monotonic() < deadline:
            role = await self._io.role(promotion.candidate)
            current = self._same(promotion)
            if current is None:
                return
            if role == "master":
                current = dataclasses.replace(current, reported_master=True)
                self._promotions[promotion.group] = current
                log.info(
                    "failover.promoted",
                    group=promotion.group,
                    candidate=str(promotion.candidate),
                    since_selected_ms=round((time.monotonic() - started) * 1000, 1),
                )
                self._reconcile({**self._roles, promotion.candidate: "master"}, promotion.group)
                return
            await asyncio.sleep(self._probe_interval)
        current = self._same(promotion)
        if current is not None and not current.reported_master:
            self._drop(
                promotion.group,
                PromotionStatus.ABORTED,
                f"{promotion.candidate} did not report master within {deadline - started:.1f}s",
            )

    def _drop(self, group: str, status: PromotionStatus, why: str) -> None:
        """Stop following a promotion; undo the fence when the failover was given up."""
        promotion = self._promotions.pop(group, None)
        seen_at = self._promotion_seen_at.pop(group, None)
        if promotion is None:
            return
        fields = {
            "group": group,
            "candidate": str(promotion.candidate),
            "replacing": str(promotion.replacing),
            "reason": why,
            "since_selected_ms": round((time.monotonic() - seen_at) * 1000, 1) if seen_at else None,
        }
        if status is PromotionStatus.SETTLED:
            log.info("failover.settled", **fields)
            self._fenced.pop(group, None)
            return
        log.warning("failover.aborted", **fields)
        fenced = self._fenced.pop(group, None)
        if fenced is not None:
            self._spawn(self._unfence(group, fenced))
        self.poke("failover-aborted")

    def _fence_bound_ms(self, group: str) -> int:
        """``fence_pause_ms``, capped at half the Sentinels' down-after-milliseconds."""
        known = [
            v.groups[group].down_after_ms
            for v in self.views
            if v.reachable and group in v.groups and v.groups[group].down_after_ms
        ]
        return min(self._fence_ms, min(known) // 2) if known else self._fence_ms

    async def _fence(self, promotion: Promotion) -> None:
        """Pause writes on the primary being replaced so none is acknowledged and lost."""
        pause_ms = self._fence_bound_ms(promotion.group)
        error = await self._io.pause_writes(promotion.replacing, pause_ms)
        if error:
            log.info(
                "fence.failed",
                group=promotion.group,
                node=str(promotion.replacing),
                error=error,
                hint="expected when the old primary is dead",
            )
        else:
            log.info(
                "fence.paused",
                group=promotion.group,
                node=str(promotion.replacing),
                pause_ms=pause_ms,
            )

    async def _unfence(self, group: str, node: Address) -> None:
        error = await self._io.unpause_writes(node)
        log.info("fence.released", group=group, node=str(node), error=error or None)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watcher.task_failed", error=repr(task.exception()))

    # ------------------------------------------------------------------ bookkeeping

    def _note_sentinels(self, views: Sequence[SentinelView]) -> None:
        """Log each Sentinel's state changes once (reachable, TILT, reply problems)."""
        for v in views:
            before = self._sentinel_state.get(v.sentinel)
            now = _SentinelState(v.reachable, v.tilt, v.error)
            self._sentinel_state[v.sentinel] = now
            if before == now:
                continue
            addr = str(v.sentinel)
            if before is None or before.reachable != v.reachable:
                if v.reachable:
                    log.info("sentinel.reachable", sentinel=addr, tilt=v.tilt)
                    self._spawn(self._check_peers(v.sentinel))
                else:
                    log.warning("sentinel.unreachable", sentinel=addr, error=v.error)
            if v.reachable and before is not None and before.reachable and before.tilt != v.tilt:
                if v.tilt:
                    log.warning("sentinel.tilt", sentinel=addr, hint="its vote is ignored")
                else:
                    log.info("sentinel.tilt_over", sentinel=addr)
            if v.reachable and v.error and (before is None or before.error != v.error):
                log.warning("sentinel.reply_ignored", sentinel=addr, error=v.error)
        for v in views:
            for name in v.groups:
                if name not in self.groups and name not in self._ignored_groups:
                    self._ignored_groups.add(name)
                    log.warning(
                        "sentinel.group_ignored",
                        group=name,
                        sentinel=str(v.sentinel),
                        hint="group is monitored by Sentinel but not in the config",
                    )

    async def _check_peers(self, sentinel: Address) -> None:
        """On (re)connecting, compare the Sentinels it knows with the configured ones.

        The majority is counted over *configured* Sentinels; if the Sentinels
        know more of each other than the config lists, that majority is not
        theirs, and a minority of them could look like a majority to us.
        """
        configured = set(self.sentinels)
        unknown: set[Address] = set()
        for group in self.groups:
            peers = await self._io.peers(sentinel, group)
            if peers is not None:
                unknown |= set(peers) - configured
        if unknown and self._unknown_peers.get(sentinel) != frozenset(unknown):
            log.warning(
                "sentinel.peers_not_configured",
                sentinel=str(sentinel),
                peers=sorted(str(p) for p in unknown),
                hint="list every Sentinel in 'sentinels:' or the majority is miscounted",
            )
        self._unknown_peers[sentinel] = frozenset(unknown)

    def _note_stale(self, views: Sequence[SentinelView]) -> None:
        """Log a Sentinel that keeps answering with an epoch older than the published one."""
        for v in views:
            for g in self.topology.groups:
                key = (v.sentinel, g.name)
                gv = v.groups.get(g.name) if v.reachable else None
                behind = (
                    gv is not None
                    and g.primary is not None
                    and gv.config_epoch < g.config_epoch
                    and gv.primary != g.primary
                )
                count = self._stale_polls.get(key, 0)
                if behind and gv is not None:
                    self._stale_polls[key] = count + 1
                    if count + 1 == STALE_AFTER_POLLS:
                        log.warning(
                            "sentinel.stale",
                            sentinel=str(v.sentinel),
                            group=g.name,
                            says=str(gv.primary),
                            epoch=gv.config_epoch,
                            published=str(g.primary),
                            published_epoch=g.config_epoch,
                        )
                elif count:
                    del self._stale_polls[key]
                    if count >= STALE_AFTER_POLLS:
                        log.info("sentinel.caught_up", sentinel=str(v.sentinel), group=g.name)

    def _note_signs(self, views: Sequence[SentinelView]) -> None:
        """A poll that shows the published primary down counts as a first sign too.

        Only the *published* primary: after a switch, the leader still shows the
        old one in failover for a moment, and that is not the start of a new one.
        """
        for v in views:
            for name, gv in v.groups.items():
                current = self.topology.group(name)
                if current is None or current.primary not in (None, gv.primary):
                    continue
                if gv.primary_down or gv.failover_in_progress:
                    self._sign(name, "poll:primary-down" if gv.primary_down else "poll:failover")

    def _sign(self, group: str, trigger: str) -> None:
        if group in self._first_sign or group not in self.groups:
            return
        self._first_sign[group] = (time.monotonic(), trigger)
        log.info("failover.detected", group=group, trigger=trigger)
        self.poke(trigger)

    # ------------------------------------------------------------------ events

    def _on_event(self, event: SentinelEvent) -> None:
        log.debug(
            "sentinel.event",
            sentinel=str(event.sentinel),
            channel=event.channel,
            payload=event.payload,
        )
        current = self.topology.group(event.group) if event.group else None
        followed = self._promotions.get(event.group) if event.group else None
        if followed is not None and promotion_aborted_by(event, followed):
            self._drop(followed.group, PromotionStatus.ABORTED, event.channel)
        if current is not None and self._react:
            self._consider(promotion_from_event(event, current, self._round))
        # A sign must be about the primary we publish: +sdown of a replica, or the
        # followers' +switch-master after we already switched, starts nothing new.
        about_primary = (
            current is not None
            and event.master is not None
            and event.master == current.primary
            and (event.channel not in {"+sdown", "+odown"} or event.instance == current.primary)
        )
        if event.group and event.channel in FAILOVER_SIGNS and about_primary:
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
            except Exception as exc:  # any failure: reconnect, never stop listening
                if failures == 0:
                    log.warning(
                        "sentinel.events.lost",
                        sentinel=str(sentinel),
                        error=str(exc),
                        kind=type(exc).__name__,
                    )
                    self.poke("events-lost")
                failures += 1
                await asyncio.sleep(backoff.compute(failures))
