"""The watcher loop against scripted Sentinels (FakeSentinelIO): what it publishes and logs.

These tests drive the real :class:`Watcher` (its tasks, its probe, its event
handling) with the in-memory I/O seam, so every failover sequence that Sentinel
can produce, including the rare ones (an abort after promotion, a lost event, a
loser's late abort), can be replayed exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from redis_sentinel_watch import (
    Address,
    FakeSentinelIO,
    PrimaryChange,
    SentinelEvent,
    Topology,
    Watcher,
)
from tests.support import wait_for

S = [Address("127.0.0.1", 26379 + i) for i in range(3)]
A = Address("127.0.0.1", 7001)
B = Address("127.0.0.1", 7002)
C = Address("127.0.0.1", 7003)
SELECTED = "slave 127.0.0.1:7002 127.0.0.1 7002 @ g 127.0.0.1 7001"


class Recorder:
    """Collects every published topology and primary change."""

    def __init__(self) -> None:
        self.topologies: list[Topology] = []
        self.changes: list[PrimaryChange] = []

    def __call__(self, topology: Topology, changes: Sequence[PrimaryChange]) -> None:
        self.topologies.append(topology)
        self.changes.extend(changes)

    def primary(self, group: str = "g") -> Address | None:
        if not self.topologies:
            return None
        g = self.topologies[-1].group(group)
        return g.primary if g else None


def all_say(io: FakeSentinelIO, primary: Address, epoch: int, group: str = "g") -> None:
    for s in S:
        io.say(s, group, primary, epoch, replicas=[r for r in (A, B) if r != primary])


@pytest.fixture
async def running() -> AsyncIterator[tuple[FakeSentinelIO, Watcher, Recorder]]:
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    io.set_role(B, "slave")
    watcher = Watcher(
        io,
        S,
        ["g"],
        poll_interval_s=0.05,
        fast_poll_interval_s=0.02,
        promotion_probe_interval_s=0.005,
        promotion_wait_s=2.0,
        fence_pause_ms=500,
    )
    rec = Recorder()
    watcher.subscribe(rec)
    task = asyncio.create_task(watcher.run())
    try:
        await wait_for(lambda: rec.primary() == A, 2, "initial primary")
        yield io, watcher, rec
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_selected_replica_published_once_it_reports_master(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """+selected-slave starts a ROLE probe; the replica is published (provisional) as soon as it
    says master, while every Sentinel still names the old primary; confirmation later changes
    nothing for routing."""
    io, watcher, rec = running
    io.say(S[0], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
    await wait_for(lambda: io.role_queries.get(B, 0) >= 3, 2, "probing the candidate")
    assert rec.primary() == A  # still a replica: nothing moves
    io.set_role(B, "master")
    await wait_for(lambda: rec.primary() == B, 2, "provisional switch")
    assert all(v.groups["g"].primary == A for v in watcher.views)  # no Sentinel agrees yet
    group = watcher.topology.group("g")
    assert group is not None and group.provisional and group.config_epoch == 1
    change = rec.changes[-1]
    assert change.provisional and change.old == A and change.new == B
    assert change.trigger == "+selected-slave"

    before = len(rec.changes)
    all_say(io, B, 2)
    await wait_for(
        lambda: not watcher.topology.groups[0].provisional, 2, "confirmation by a majority"
    )
    assert watcher.topology.groups[0].config_epoch == 2
    assert len(rec.changes) == before  # no second switch
    assert "g" not in watcher.promotions


async def test_old_primary_claiming_master_never_comes_back(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """While the leader is still running the failover, the old primary saying master (a
    SIGCONTed or restarted node, redis#1813) is ignored."""
    io, watcher, rec = running
    io.say(S[0], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    io.set_role(B, "master")
    io.emit(SentinelEvent(S[0], "+failover-state-wait-promotion", SELECTED, "g", B, A))
    await wait_for(lambda: rec.primary() == B, 2, "provisional switch")
    switched = len(rec.topologies)
    polls = watcher.polls
    await wait_for(lambda: watcher.polls >= polls + 5, 2, "more polls")
    assert rec.primary() == B
    assert all(t.groups[0].primary == B for t in rec.topologies[switched - 1 :])


async def test_leader_abort_returns_to_sentinels_and_releases_fence(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """-failover-abort-* from the leader: the Sentinels' primary (still master) comes back and
    the write pause on it is lifted."""
    io, _, rec = running
    io.say(S[0], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    io.set_role(B, "master")
    with capture_logs() as logs:
        io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
        await wait_for(lambda: rec.primary() == B, 2, "provisional switch")
        assert io.paused.get(A) == 500  # fenced at selection
        io.say(S[0], "g", A, 1, replicas=[B])  # leader gave up
        io.emit(
            SentinelEvent(
                S[0], "-failover-abort-slave-timeout", "master g 127.0.0.1 7001", "g", A, A
            )
        )
        await wait_for(lambda: rec.primary() == A, 2, "back to the Sentinels' primary")
        await wait_for(lambda: A not in io.paused, 2, "fence released")
    assert len(events(logs, "failover.aborted")) == 1
    assert not rec.topologies[-1].groups[0].provisional


async def test_losers_late_abort_does_not_undo_the_switch(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """A Sentinel that lost the election reports -failover-abort-not-elected after the winner
    promoted the replica: the switch stands."""
    io, watcher, rec = running
    io.say(S[0], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    io.set_role(B, "master")
    io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
    await wait_for(lambda: rec.primary() == B, 2, "provisional switch")
    io.emit(
        SentinelEvent(S[1], "-failover-abort-not-elected", "master g 127.0.0.1 7001", "g", A, A)
    )
    polls = watcher.polls
    await wait_for(lambda: watcher.polls >= polls + 3, 2, "more polls")
    assert rec.primary() == B and "g" in watcher.promotions


async def test_abort_seen_only_in_a_poll(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """The abort message was lost: a later poll of the leader with no failover in progress and
    the old configuration is enough to go back."""
    io, _, rec = running
    io.say(S[0], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    io.set_role(B, "master")
    io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
    await wait_for(lambda: rec.primary() == B, 2, "provisional switch")
    io.say(S[0], "g", A, 1, replicas=[B])
    await wait_for(lambda: rec.primary() == A, 2, "abort seen in a poll")


async def test_promotion_found_by_polling_without_events(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """No pub/sub message at all: the leader's 'promoted' replica flag in a poll starts the
    probe and the switch."""
    io, _, rec = running
    io.set_role(B, "master")
    io.say(S[1], "g", A, 1, replicas=[B], failover_in_progress=True, promoted=B)
    await wait_for(lambda: rec.primary() == B, 2, "switch from a poll")
    assert rec.changes[-1].provisional and rec.changes[-1].trigger.startswith("poll:")


async def test_probe_is_bounded_by_failover_timeout(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """A candidate that never says master is given up after the group's failover-timeout,
    and the fence on the old primary is released."""
    io, watcher, rec = running
    for s in S:
        io.say(s, "g", A, 1, replicas=[B], failover_timeout_ms=300)
    await wait_for(lambda: watcher.polls > 2, 2, "poll with the timeout")
    with capture_logs() as logs:
        # From +switch-master there is no leader whose polls could show an abort: only
        # the bound ends the probe.
        payload = "g 127.0.0.1 7001 127.0.0.1 7002"
        io.emit(SentinelEvent(S[1], "+switch-master", payload, "g", B, A))
        await wait_for(lambda: "g" in watcher.promotions, 2, "promotion noted")
        await wait_for(lambda: "g" not in watcher.promotions, 3, "probe given up")
        await wait_for(lambda: A not in io.paused, 2, "fence released")
    assert rec.primary() == A
    assert "did not report master" in events(logs, "failover.aborted")[0]["reason"]


async def test_event_about_another_primary_is_ignored(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """+selected-slave about a primary we do not publish (an old failover) starts nothing."""
    io, watcher, rec = running
    io.set_role(C, "master")
    payload = "slave 127.0.0.1:7003 127.0.0.1 7003 @ g 127.0.0.1 7002"
    io.emit(SentinelEvent(S[0], "+selected-slave", payload, "g", C, B))
    polls = watcher.polls
    await wait_for(lambda: watcher.polls >= polls + 3, 2, "more polls")
    assert rec.primary() == A and not watcher.promotions and C not in io.role_queries


async def test_react_first_can_be_switched_off() -> None:
    """react_on_promotion=False: the selected replica is published only when a majority says so."""
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    io.set_role(B, "master")
    watcher = Watcher(io, S, ["g"], poll_interval_s=0.02, react_on_promotion=False)
    rec = Recorder()
    watcher.subscribe(rec)
    task = asyncio.create_task(watcher.run())
    try:
        await wait_for(lambda: rec.primary() == A, 2, "initial primary")
        io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
        polls = watcher.polls
        await wait_for(lambda: watcher.polls >= polls + 3, 2, "more polls")
        assert rec.primary() == A
        all_say(io, B, 2)
        await wait_for(lambda: rec.primary() == B, 2, "majority switch")
        assert not rec.changes[-1].provisional
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_several_groups_and_unknown_group_warned_once() -> None:
    """Two groups from one set of Sentinels fail over independently; a group Sentinel
    monitors but the config does not name is ignored with exactly one warning."""
    io = FakeSentinelIO()
    for s in S:
        io.say(s, "g1", A, 1)
        io.say(s, "g2", B, 1)
        io.say(s, "stranger", C, 1)
    for node in (A, B):
        io.set_role(node, "master")
    watcher = Watcher(io, S, ["g1", "g2"], poll_interval_s=0.01)
    rec = Recorder()
    watcher.subscribe(rec)
    with capture_logs() as logs:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(
                lambda: rec.primary("g1") == A and rec.primary("g2") == B, 2, "both groups"
            )
            io.set_role(C, "master")
            for s in S:
                io.say(s, "g2", C, 2)
            await wait_for(lambda: rec.primary("g2") == C, 2, "g2 failover")
            await wait_for(lambda: watcher.polls > 10, 2, "more polls")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert rec.primary("g1") == A
    assert [c.group for c in rec.changes if c.old is not None] == ["g2"]
    ignored = events(logs, "sentinel.group_ignored")
    assert len(ignored) == 1 and ignored[0]["group"] == "stranger"
    assert watcher.topology.group("stranger") is None


async def test_sentinel_state_changes_logged_once_each() -> None:
    """One Sentinel down for many polls, then back: one 'unreachable', one 'reachable'; the
    event stream loss is logged once however many reconnects fail; a stale Sentinel is
    reported once."""
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    io.set_role(B, "master")
    watcher = Watcher(io, S, ["g"], poll_interval_s=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: watcher.topology.groups[0].primary == A, 2, "primary")
            io.go_down(S[2])
            polls = watcher.polls
            await wait_for(lambda: watcher.polls >= polls + 20, 3, "polls while down")
            io.say(S[0], "g", B, 2)
            io.say(S[1], "g", B, 2)
            io.say(S[2], "g", A, 1)  # back, but stale
            await wait_for(lambda: watcher.topology.groups[0].primary == B, 2, "failover")
            polls = watcher.polls
            await wait_for(lambda: watcher.polls >= polls + 10, 3, "polls while stale")
            io.say(S[2], "g", B, 2)
            polls = watcher.polls
            await wait_for(lambda: watcher.polls >= polls + 5, 3, "polls after catching up")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    down = [e for e in events(logs, "sentinel.unreachable") if e["sentinel"] == str(S[2])]
    up = [e for e in events(logs, "sentinel.reachable") if e["sentinel"] == str(S[2])]
    assert len(down) == 1 and len(up) == 2  # first contact, then the return
    assert len([e for e in events(logs, "sentinel.events.lost") if e["sentinel"] == str(S[2])]) == 1
    stale = events(logs, "sentinel.stale")
    assert len(stale) == 1 and stale[0]["sentinel"] == str(S[2]) and stale[0]["epoch"] == 1
    assert len(events(logs, "sentinel.caught_up")) == 1
    assert watcher.topology.groups[0].primary == B


async def test_all_sentinels_down_keeps_last_primary_degraded(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """Every Sentinel unreachable: the last primary stays published, health degraded."""
    io, watcher, rec = running
    for s in S:
        io.go_down(s)
    await wait_for(lambda: watcher.topology.groups[0].health.value == "degraded", 2, "degraded")
    assert rec.primary() == A and watcher.reachable_sentinels == 0


async def test_sentinels_unknown_to_config_warned_once() -> None:
    """A Sentinel that knows a peer missing from the config (SENTINEL SENTINELS, asked on
    every (re)connect) is warned about once; configured peers are not."""
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    extra = Address("127.0.0.1", 26999)
    io.known_peers = {S[0]: (S[1], S[2], extra), S[1]: (S[0], S[2])}
    watcher = Watcher(io, S, ["g"], poll_interval_s=0.01)
    with capture_logs() as logs:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: watcher.polls > 10, 2, "polls")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    warned = events(logs, "sentinel.peers_not_configured")
    assert len(warned) == 1
    assert warned[0]["sentinel"] == str(S[0]) and warned[0]["peers"] == [str(extra)]


async def test_fence_shorter_than_half_down_after(
    running: tuple[FakeSentinelIO, Watcher, Recorder],
) -> None:
    """The write pause never reaches the Sentinels' down-after-milliseconds (a paused primary
    stalls their PINGs behind the hello PUBLISH): 500 ms asked, 400 ms with down-after 800."""
    io, watcher, _ = running
    for s in S:
        io.say(s, "g", A, 1, replicas=[B], down_after_ms=800)
    io.say(S[0], "g", A, 1, [B], failover_in_progress=True, promoted=B, down_after_ms=800)
    polls = watcher.polls
    await wait_for(lambda: watcher.polls > polls + 1, 2, "a poll with down-after")
    io.emit(SentinelEvent(S[0], "+selected-slave", SELECTED, "g", B, A))
    await wait_for(lambda: A in io.paused, 2, "fence")
    assert io.paused[A] == 400


async def test_listener_that_raises_gets_the_topology_again() -> None:
    """A listener exception (e.g. a snapshot that failed to build) is logged, the watch
    goes on, and the same topology is delivered again after the next poll, so sidecars
    are never left on an old primary by one failure."""
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    watcher = Watcher(io, S, ["g"], poll_interval_s=0.02)
    seen: list[Address | None] = []
    calls = 0

    def flaky(topology: Topology, changes: Sequence[PrimaryChange]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("snapshot build failed")
        g = topology.group("g")
        seen.append(g.primary if g else None)

    watcher.subscribe(flaky)
    task = asyncio.create_task(watcher.run())
    try:
        with capture_logs() as logs:
            await wait_for(lambda: bool(seen), 5, "the topology delivered again")
        assert seen[0] == A
        assert any(e["event"] == "watcher.listener_failed" for e in logs)
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_dissenting_sentinel_published_and_logged_once_per_change() -> None:
    """A Sentinel naming another primary at a higher epoch is outvoted (A stays), and once it
    has disagreed for the grace period it is in the published topology and logged once, with
    its view and the majority's; agreeing again is logged once as cleared."""
    io = FakeSentinelIO()
    all_say(io, A, 1)
    io.set_role(A, "master")
    now = [0.0]
    watcher = Watcher(io, S, ["g"], dissent_grace_s=5.0, clock=lambda: now[0])
    rec = Recorder()
    watcher.subscribe(rec)
    await watcher.poll_once()
    io.say(S[2], "g", C, 9)
    with capture_logs() as logs:
        for t in (1.0, 4.0, 6.0, 7.0, 8.0):  # seen at 1 s, reported from 6 s on
            now[0] = t
            await watcher.poll_once()
            group = watcher.topology.group("g")
            assert group is not None and group.primary == A
            assert [d.sentinel for d in group.dissent] == ([S[2]] if t >= 6.0 else [])
        io.say(S[2], "g", A, 1)
        now[0] = 9.0
        await watcher.poll_once()
    dissent = events(logs, "sentinel.dissent")
    assert len(dissent) == 1
    assert {k: dissent[0][k] for k in ("sentinel", "says", "epoch", "majority")} == {
        "sentinel": str(S[2]),
        "says": str(C),
        "epoch": 9,
        "majority": str(A),
    }
    assert dissent[0]["reasons"] == ["other-primary", "higher-epoch"]
    assert [e["sentinel"] for e in events(logs, "sentinel.dissent_cleared")] == [str(S[2])]
    assert watcher.topology.groups[0].dissent == ()
    assert rec.changes[1:] == []  # the primary never moved
