"""The watcher loop: poll every Sentinel, decide, publish a new :class:`Topology`.

Thin on purpose: the decisions live in :mod:`.agreement`, the I/O behind
:class:`.io.SentinelIO`. Pub/sub events only *trigger* work: an immediate poll
and a burst of fast polls, and, when the failover leader names the replica it
selected, a fast ``ROLE`` probe of that replica (react first, see
:func:`.agreement.decide_group`). The poll stays the source of truth, because
a pub/sub message can be lost on a reconnect while a poll cannot lie about the
present.

Each primary change is timed from its *own* first sign
(:mod:`.first_signs`): a ``+sdown`` taken back by ``-sdown`` before any
failover, or a sign nothing has supported for a few down-after periods, is
not charged to a later failover.

What is not the loop lives beside it: the event listeners and which event is
a sign (:mod:`.events`), what a new topology changed and how that is logged
(:mod:`.changes`), the once-per-change notes about each Sentinel
(:mod:`.sentinel_notes`), and whether each replica is synced
(:mod:`.replica_sync`, asked off the poll's path). What stays here is the state those pieces share:
the published topology, the failovers followed early and their fences.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine, Sequence

import structlog

from .agreement import (
    DISSENT_GRACE_S,
    Promotion,
    PromotionStatus,
    candidates_to_verify,
    decide_group,
    promotion_aborted_by,
    promotion_from_event,
    promotion_from_views,
    promotion_status,
)
from .changes import Listener, PrimaryChange, primary_changes
from .events import follow_events, is_failover_sign, is_primary_up
from .fence import fence, fence_pause_ms, unfence
from .first_signs import DEFAULT_DOWN_AFTER_MS, SIGN_EXPIRY_FACTOR, FirstSigns
from .io import SentinelIO
from .model import Address, GroupTopology, SentinelView, Topology
from .replica_sync import ReplicaSyncCheck
from .replies import SentinelEvent
from .sentinel_notes import SentinelNotes

__all__ = ["Watcher"]

log = structlog.get_logger("redis_sentinel_watch")


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
        dissent_grace_s: float = DISSENT_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
        seed: Topology | None = None,
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
        self._dissent_grace = dissent_grace_s
        self._clock = clock  # times of signs and switches (injectable for tests)
        self._kick = asyncio.Event()
        self._fast_until = 0.0
        self._signs = FirstSigns(clock, self._sign_limits)
        self._notes = SentinelNotes(self.sentinels, self.groups)
        self._sync = ReplicaSyncCheck(max(poll_interval_s, 1.0))
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
        self.topology = Topology(tuple(self._seeded(g, seed) for g in self.groups))
        self.polls = 0
        self.first_poll_done = asyncio.Event()

    def _seeded(self, group: str, seed: Topology | None) -> GroupTopology:
        """Where ``group`` starts: unknown, or what a previous watcher concluded (``seed``,
        a config reload that changed the Sentinels or groups). A seeded group keeps its
        last good primary and epoch until this watcher's Sentinels agree on a newer one,
        so replacing the watcher never sends a group back to "no primary"."""
        known = seed.group(group) if seed is not None else None
        if known is None:
            return GroupTopology(name=group, primary=None, sentinels=len(self.sentinels))
        return dataclasses.replace(known, sentinels=len(self.sentinels))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(topology, changes)`` after every change of topology."""
        self._listeners.append(listener)

    @property
    def reachable_sentinels(self) -> int:
        return self._notes.reachable

    @property
    def promotions(self) -> dict[str, Promotion]:
        """Failovers being followed early, by group (a copy)."""
        return dict(self._promotions)

    def poke(self, reason: str = "manual") -> None:
        """Poll now and keep polling fast for a while (a failover may be under way)."""
        self._fast_until = time.monotonic() + self._fast_window
        self._kick.set()

    def reconfigure(
        self,
        *,
        poll_interval_s: float,
        role_check: bool,
        react_on_promotion: bool,
        promotion_probe_interval_s: float,
        fence_pause_ms: int,
    ) -> None:
        """New timings and switches (a config reload), read from the next use on; then
        poll now, so the new credentials of the I/O are tried at once, not a poll later.
        The Sentinels and groups are fixed for the watcher's lifetime."""
        self._poll_interval = poll_interval_s
        self._sync.interval_s = max(poll_interval_s, 1.0)
        self._role_check = role_check
        self._react = react_on_promotion
        self._probe_interval = promotion_probe_interval_s
        self._fence_ms = fence_pause_ms
        self._kick.set()

    async def run(self) -> None:
        """Poll forever (until cancelled), with one event listener per Sentinel."""
        listeners = [
            asyncio.create_task(follow_events(self._io, s, self._on_event, self.poke))
            for s in self.sentinels
        ]
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
        started = self._clock()
        views = await asyncio.gather(*(self._io.query(s, self.groups) for s in self.sentinels))
        self.views = tuple(views)
        self._views_round = this_round
        self.polls += 1
        for sentinel in self._notes.note(views):
            self._spawn(self._notes.check_peers(self._io, sentinel))
        self._note_signs(views, started)
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
        self._notes.note_stale(views, self.topology)
        if self._sync.due():
            self._spawn(self.check_replicas())
        self.first_poll_done.set()
        return self.topology

    async def check_replicas(self) -> None:
        """Ask each replica whether it is synced, then publish what changed (a task of
        its own, every poll interval but at most once a second: see :mod:`.replica_sync`)."""
        await self._sync.refresh(self._io, self.topology, self.views)
        self._publish(self.topology)

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
                    now=self._clock(),
                    dissent_grace_s=self._dissent_grace,
                )
            )
        self._publish(Topology(tuple(decided)))

    def _publish(self, new: Topology) -> None:
        new = self._sync.annotate(new, self.views)
        old = self.topology
        if new == old:
            self.topology = new  # same routing and health; keeps the dissent's dates
            return
        changes = primary_changes(old, new, self._signs.take, self._clock())
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
            pause_ms = fence_pause_ms(
                self._fence_ms, self._known_ms(promotion.group, "down_after_ms")
            )
            self._spawn(fence(self._io, promotion, pause_ms))

    def _same(self, promotion: Promotion) -> Promotion | None:
        """The stored promotion if it is still the one ``promotion`` describes."""
        current = self._promotions.get(promotion.group)
        if current is None or (current.candidate, current.replacing) != (
            promotion.candidate,
            promotion.replacing,
        ):
            return None
        return current

    def _known_ms(self, group: str, setting: str) -> list[int]:
        """A group setting (``down_after_ms``, ``failover_timeout_ms``) as Sentinels report it."""
        values = (
            int(getattr(v.groups[group], setting))
            for v in self.views
            if v.reachable and group in v.groups
        )
        return [ms for ms in values if ms]

    def _probe_bound(self, group: str) -> float:
        """How long to wait for the candidate: the Sentinels' failover-timeout, if known."""
        known = self._known_ms(group, "failover_timeout_ms")
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
            self._spawn(unfence(self._io, group, fenced))
        self.poke("failover-aborted")

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("watcher.task_failed", error=repr(task.exception()))

    # ------------------------------------------------------------------ bookkeeping

    def _note_signs(self, views: Sequence[SentinelView], sent_at: float) -> None:
        """A poll that shows the published primary down counts as a first sign too,
        and one that shows it up again takes a Sentinel's lost ``-sdown`` as read.

        Only the *published* primary: after a switch, the leader still shows the
        old one in failover for a moment, and that is not the start of a new one.
        """
        for v in views:
            for name, gv in v.groups.items():
                current = self.topology.group(name)
                if current is None or current.primary not in (None, gv.primary):
                    continue
                if name not in self.groups:
                    continue
                if self._signs.poll(
                    name,
                    v.sentinel,
                    down=gv.primary_down,
                    failing_over=gv.failover_in_progress,
                    sent_at=sent_at,
                ):
                    self.poke("poll")

    def _sign(self, group: str, trigger: str, sentinel: Address | None = None) -> None:
        if group in self.groups and self._signs.sign(group, trigger, sentinel):
            self.poke(trigger)

    def _sign_limits(self, group: str) -> tuple[float, float]:
        """How long an unsupported first sign lives: :data:`SIGN_EXPIRY_FACTOR` down-after
        periods (the longest a Sentinel reports; polls refresh a primary that stays down,
        so the poll interval is a floor), plus twice the failover-timeout once a failover
        was seen (Sentinel's retry period)."""
        known = self._known_ms(group, "down_after_ms")
        down_after_s = (max(known) if known else DEFAULT_DOWN_AFTER_MS) / 1000
        return (
            SIGN_EXPIRY_FACTOR * max(down_after_s, self._poll_interval),
            2 * self._probe_bound(group),
        )

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
        group = event.group
        if group and is_failover_sign(event, current):
            self._sign(group, event.channel, event.sentinel)
        else:
            if group and is_primary_up(event, current):
                self._signs.primary_up(group, event.sentinel, f"-sdown from {event.sentinel}")
            self.poke(event.channel)
