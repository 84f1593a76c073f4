"""Each failover is timed from its own first sign (watcher + timeline, injected clock).

A ``+sdown`` the Sentinels take back with ``-sdown``, or one that nothing has
supported for a few down-after periods, must not become the start of the next
failover: in a soak, a planned failover that Envoy followed in 223 ms was
logged as ``sign=+sdown detect_to_acked_ms=6600`` because of an earlier blip.
These tests drive the real :class:`Watcher` with scripted Sentinels and a
clock the test moves, then hand the change to the real :class:`Timeline`, so
every number asserted is exact.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from redis_sentinel_watch import (
    Address,
    FakeSentinelIO,
    GroupView,
    PrimaryChange,
    SentinelEvent,
    SentinelView,
    Watcher,
)
from xds.ads.sidecars import Sidecars
from xds.service.timeline import Timeline

S = [Address("127.0.0.1", 26379 + i) for i in range(3)]
A = Address("127.0.0.1", 7001)
B = Address("127.0.0.1", 7002)
DOWN_AFTER_MS = 1000  # signs expire after 3 s unsupported
WALL = 1_700_000_000.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def say(io: FakeSentinelIO, primary: Address, epoch: int, down: Sequence[Address] = ()) -> None:
    """Every Sentinel names ``primary``; those in ``down`` flag it s_down."""
    for s in S:
        view = GroupView(
            "g",
            primary,
            epoch,
            tuple(r for r in (A, B) if r != primary),
            primary_down=s in down,
            down_after_ms=DOWN_AFTER_MS,
        )
        io.answers[s] = SentinelView(s, True, {"g": view})


def about_a(sentinel: Address, channel: str) -> SentinelEvent:
    """An event whose payload is the master itself (``master g 127.0.0.1 7001``)."""
    return SentinelEvent(sentinel, channel, "master g 127.0.0.1 7001", "g", A, A)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[PrimaryChange] = []

    def __call__(self, _topology: object, changes: Sequence[PrimaryChange]) -> None:
        self.changes.extend(changes)


@pytest.fixture
async def setup() -> tuple[FakeSentinelIO, Watcher, Recorder, Clock]:
    """A watcher that has published A (no background tasks: the test drives every poll)."""
    io = FakeSentinelIO()
    say(io, A, 1)
    io.set_role(A, "master")
    io.set_role(B, "slave")
    clock = Clock()
    watcher = Watcher(io, S, ["g"], react_on_promotion=False, clock=clock)
    rec = Recorder()
    watcher.subscribe(rec)
    await watcher.poll_once()
    assert watcher.topology.primaries() == {"g": A}
    rec.changes.clear()
    return io, watcher, rec, clock


async def switch_to_b(io: FakeSentinelIO, watcher: Watcher, rec: Recorder) -> PrimaryChange:
    """The Sentinels agree on B at a higher epoch and B says master: one poll switches."""
    say(io, B, 2)
    io.set_role(B, "master")
    await watcher.poll_once()
    assert len(rec.changes) == 1 and rec.changes[0].new == B
    return rec.changes[0]


async def record_of(change: PrimaryChange, clock: Clock) -> dict[str, Any]:
    """What /events and failover.completed would say (no sidecars: ACKed at once)."""
    timeline = Timeline(Sidecars(), clock=clock, wall=lambda: WALL)
    record = await timeline.follow(change, timeline.start(change))
    return record.as_dict()


def named(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_sdown_blip_then_planned_failover_starts_at_the_planned_failover(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """Two Sentinels flag +sdown and take it back (-sdown); an hour later a SENTINEL FAILOVER
    (+try-failover) switches in 200 ms: the timeline starts at +try-failover, not at the blip."""
    io, watcher, rec, clock = setup
    with capture_logs() as logs:
        watcher._on_event(about_a(S[0], "+sdown"))
        clock.advance(0.1)
        watcher._on_event(about_a(S[1], "+sdown"))
        clock.advance(1.1)
        watcher._on_event(about_a(S[0], "-sdown"))
        assert not named(logs, "failover.sign_cleared")  # S1 still sees it down
        watcher._on_event(about_a(S[1], "-sdown"))
    cleared = named(logs, "failover.sign_cleared")
    assert [(e["sign"], e["reason"]) for e in cleared] == [("+sdown", f"-sdown from {S[1]}")]

    clock.advance(3600)
    started = clock.now
    watcher._on_event(about_a(S[2], "+try-failover"))
    clock.advance(0.2)
    change = await switch_to_b(io, watcher, rec)

    assert change.trigger == "+try-failover"
    assert change.first_sign_at == started
    record = await record_of(change, clock)
    assert record["sign"] == "+try-failover" and record["trigger"] == "sentinel-event"
    assert record["detect_to_switch_ms"] == 200.0
    assert record["detect_to_acked_ms"] == 200.0
    assert record["at"] == WALL  # the switch, on the wall clock
    assert record["at"] - record["detect_to_switch_ms"] / 1000 == pytest.approx(WALL - 0.2)


async def test_stale_sdown_is_replaced_by_the_failovers_own_sign(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """A +sdown whose -sdown was lost, unsupported for longer than 3x down-after, is not
    the start of a failover that comes later."""
    io, watcher, rec, clock = setup
    watcher._on_event(about_a(S[0], "+sdown"))
    clock.advance(3 * DOWN_AFTER_MS / 1000 + 0.1)
    with capture_logs() as logs:
        watcher._on_event(about_a(S[0], "+try-failover"))
    assert [e["reason"] for e in named(logs, "failover.sign_cleared")] == ["expired"]
    started = clock.now
    clock.advance(0.05)
    change = await switch_to_b(io, watcher, rec)
    assert (change.trigger, change.first_sign_at) == ("+try-failover", started)


async def test_stale_sdown_is_not_charged_to_a_failover_seen_only_by_poll(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """Events lost (a reconnect): the change is timed from the switch, trigger 'reconcile',
    not from a +sdown a minute old."""
    io, watcher, rec, clock = setup
    watcher._on_event(about_a(S[0], "+sdown"))
    clock.advance(60)
    change = await switch_to_b(io, watcher, rec)
    assert (change.trigger, change.first_sign_at) == ("poll", None)
    record = await record_of(change, clock)
    assert record["trigger"] == "reconcile" and record["detect_to_switch_ms"] == 0.0


async def test_sdown_that_leads_to_the_failover_stays_its_first_sign(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """kill -9: +sdown, +odown, +try-failover, and the primary coming back (-sdown) once the
    failover runs changes nothing: the failover is timed from the +sdown."""
    io, watcher, rec, clock = setup
    first = clock.now
    watcher._on_event(about_a(S[0], "+sdown"))
    clock.advance(0.4)
    watcher._on_event(about_a(S[0], "+odown"))
    clock.advance(0.1)
    watcher._on_event(about_a(S[0], "+try-failover"))
    clock.advance(0.5)
    watcher._on_event(about_a(S[0], "-sdown"))
    clock.advance(0.9)
    change = await switch_to_b(io, watcher, rec)
    assert (change.trigger, change.first_sign_at) == ("+sdown", first)
    assert (await record_of(change, clock))["detect_to_switch_ms"] == 1900.0


async def test_primary_that_stays_down_keeps_its_first_sign(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """Polls that keep showing the primary s_down support the +sdown well past 3x down-after
    (the failover is slow, e.g. quorum was missing): it is still the failover's start."""
    io, watcher, rec, clock = setup
    first = clock.now
    watcher._on_event(about_a(S[0], "+sdown"))
    say(io, A, 1, down=[S[0]])
    for _ in range(10):
        clock.advance(1.0)
        await watcher.poll_once()
    clock.advance(1.0)
    change = await switch_to_b(io, watcher, rec)
    assert (change.trigger, change.first_sign_at) == ("+sdown", first)


async def test_poll_showing_primary_up_ends_a_blip_whose_sdown_was_lost(
    setup: tuple[FakeSentinelIO, Watcher, Recorder, Clock],
) -> None:
    """The -sdown message is lost, but a poll sent after the +sdown shows the primary up."""
    io, watcher, rec, clock = setup
    watcher._on_event(about_a(S[0], "+sdown"))
    clock.advance(1.2)
    with capture_logs() as logs:
        await watcher.poll_once()  # every Sentinel: not down
    assert [e["reason"] for e in named(logs, "failover.sign_cleared")] == [
        "poll shows the primary up"
    ]
    clock.advance(1.0)
    started = clock.now
    watcher._on_event(about_a(S[0], "+try-failover"))
    change = await switch_to_b(io, watcher, rec)
    assert change.first_sign_at == started


class SdownDuringPoll(FakeSentinelIO):
    """Delivers S0's -sdown while a poll (which already saw s_down) is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.during_query: list[Any] = []

    async def query(self, sentinel: Address, groups: Sequence[str]) -> SentinelView:
        view = await super().query(sentinel, groups)
        while self.during_query:
            self.during_query.pop()()
        return view


async def test_poll_older_than_a_sdown_does_not_reopen_the_blip() -> None:
    """A poll sent before the -sdown arrived still shows s_down: older news, no new sign."""
    io = SdownDuringPoll()
    say(io, A, 1)
    io.set_role(A, "master")
    clock = Clock()
    watcher = Watcher(io, S, ["g"], react_on_promotion=False, clock=clock)
    await watcher.poll_once()
    watcher._on_event(about_a(S[0], "+sdown"))
    say(io, A, 1, down=[S[0]])
    clock.advance(1.2)

    def sdown_cleared() -> None:
        clock.advance(0.01)
        watcher._on_event(about_a(S[0], "-sdown"))

    io.during_query.append(sdown_cleared)
    with capture_logs() as logs:
        await watcher.poll_once()
    assert named(logs, "failover.sign_cleared")
    assert not named(logs, "failover.detected")
