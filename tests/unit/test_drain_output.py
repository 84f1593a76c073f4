"""What a drain prints while it waits: how often, in which shape, with an injected clock.

The rule (issue 14, item 5): a progress line at least every second while a
wait lasts, and as soon as what it sees changes, but never a flood (a
replica's offset moves on every 2 ms poll); ``--json`` prints the same as one
JSON object per line and ends with the result and its exit code.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest

from redis_sentinel_watch import Address
from xds.ops.drain_output import (
    CHANGE_GAP_S,
    PROGRESS_INTERVAL_S,
    DrainResult,
    Steps,
)

NEW = Address("127.0.0.1", 7002)


class Clock:
    """A monotonic clock the test moves by hand, in whole milliseconds (no float drift)."""

    def __init__(self) -> None:
        self.ms = 100_000

    @property
    def now(self) -> float:
        return self.ms / 1000

    def tick(self, seconds: float) -> float:
        self.ms += round(seconds * 1000)
        return self.now

    def __call__(self) -> float:
        return self.now


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_steady_wait_prints_once_per_interval_not_per_poll() -> None:
    """A 9 s wait polled every 0.2 s (Sentinel's settle wait) that sees the same thing
    throughout: one start line and one progress line per second, each saying what it
    waits for, what it sees and for how long, not one per poll."""
    clock, out = Clock(), io.StringIO()
    steps = Steps(out, clock=clock)
    wait = steps.wait("a Sentinel majority (2 of 3) to see replica-priority 100 on X")
    printed = []
    for _ in range(45):  # 45 polls, 9 s
        clock.tick(0.2)
        printed.append(wait.saw("0 of 3 so far"))
    shown = lines(out)
    assert shown[0].split(None, 4)[3:] == [
        "drain.wait_started",
        "waiting for a Sentinel majority (2 of 3) to see replica-priority 100 on X",
    ]
    progress = shown[1:]
    assert len(progress) == 9 == sum(printed)
    assert progress[0].endswith(
        "drain.waiting            waiting for a Sentinel majority (2 of 3) to see "
        "replica-priority 100 on X: 0 of 3 so far (1.0 s)"
    )
    assert progress[-1].endswith("(9.0 s)")
    assert progress[0].startswith("+   1000.0 ms")


def test_a_change_prints_at_once_but_never_more_often_than_the_gap() -> None:
    """The first poll is only the baseline; a new "2 of 3" prints on the next poll past
    CHANGE_GAP_S, and a state that changes on every 2 ms poll prints at most every
    CHANGE_GAP_S; the gap between any two lines is never more than the interval."""
    clock, out = Clock(), io.StringIO()
    steps = Steps(out, clock=clock)
    wait = steps.wait("3 sidecars to ACK the new primary")
    assert not wait.saw("1 of 3")  # baseline, 0 s
    clock.tick(CHANGE_GAP_S / 2)
    assert not wait.saw("2 of 3")  # changed, but too soon after the start line
    clock.tick(CHANGE_GAP_S)
    assert wait.saw("2 of 3")  # still different from the last printed: now
    assert lines(out)[-1].endswith("waiting for 3 sidecars to ACK the new primary: 2 of 3 (0.3 s)")

    at = []
    for n in range(1000):  # 2 s of polls every 2 ms, each seeing a new offset
        clock.tick(0.002)
        if wait.saw(f"at {n}"):
            at.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert min(gaps) >= CHANGE_GAP_S - 1e-9
    assert len(at) <= 2 / CHANGE_GAP_S

    # a key compares what matters: moving offsets with the same count print once a second
    wait = steps.wait("1 replica(s) to reach the primary's offset 900")
    at = []
    for n in range(1000):  # 2 s
        clock.tick(0.002)
        if wait.saw(f"0 of 1 there (R at {n})", key=0):
            at.append(clock.now)
    assert len(at) == 2
    assert all(g >= PROGRESS_INTERVAL_S - 1e-9 for g in (at[0] - wait.started, at[1] - at[0]))


def test_lines_stay_on_a_one_second_grid_whatever_the_poll_period() -> None:
    """Polled every 0.3 s, a 9 s wait still prints 9 lines: each falls due a whole
    second after the start, not a second after the last (late) line, so lateness
    never adds up; no two lines are more than one poll past the interval apart."""
    clock, out = Clock(), io.StringIO()
    wait = Steps(out, clock=clock).wait("a Sentinel majority (2 of 3) to agree")
    assert wait.due_in() == PROGRESS_INTERVAL_S  # a loop may sleep up to that, no longer
    clock.tick(0.4)
    assert wait.due_in() == pytest.approx(0.6)
    clock.tick(-0.4)
    at = [wait.started]
    for _ in range(31):  # 0 to 9 s
        if wait.saw("0 of 3 so far"):
            at.append(clock.now)
        clock.tick(0.3)
    assert len(at) - 1 == 9
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(at)]
    assert max(gaps) <= PROGRESS_INTERVAL_S + 0.3
    assert [line.rsplit("(", 1)[1] for line in lines(out)[1:4]] == ["1.2 s)", "2.1 s)", "3.0 s)"]


def test_a_slow_first_poll_prints_at_once() -> None:
    """A poll that itself took longer than the interval (an unreachable Sentinel's
    timeout) prints right away: the silence must not grow with the poll time."""
    clock, out = Clock(), io.StringIO()
    wait = Steps(out, clock=clock).wait("a Sentinel majority (2 of 3) to agree")
    clock.tick(1.5)
    assert wait.saw("1 of 3 so far; unreachable: 127.0.0.1:26380")


def test_json_lines_carry_the_same_and_end_with_the_result() -> None:
    """With --json each line is one object: the start of a wait, its progress (what,
    seen, elapsed_s and the caller's fields), a step, and last the result with
    exit_code; the summary line stays a human line only without --json."""
    clock, out = Clock(), io.StringIO()
    steps = Steps(out, json_lines=True, clock=clock)
    wait = steps.wait("3 sidecars to ACK the new primary")
    wait.saw("2 of 3", have=2, need=3)
    clock.tick(1.0)
    wait.saw("2 of 3", have=2, need=3)
    steps("drain.sidecars_acked", "3 sidecar(s) route to 127.0.0.1:7002")
    steps.say("drained: it is a replica")
    steps.result(DrainResult(0, "switched", "drained: it is a replica", new_primary=NEW))
    records: list[dict[str, Any]] = [json.loads(line) for line in lines(out)]
    assert [r["event"] for r in records] == [
        "drain.wait_started",
        "drain.waiting",
        "drain.sidecars_acked",
        "drain.info",
        "drain.result",
    ]
    waiting = records[1]
    assert waiting["what"] == "3 sidecars to ACK the new primary"
    assert (waiting["seen"], waiting["elapsed_s"], waiting["have"], waiting["need"]) == (
        "2 of 3",
        1.0,
        2,
        3,
    )
    assert waiting["ms"] == 1000.0
    assert records[-1] == {
        "ms": 1000.0,
        "event": "drain.result",
        "exit_code": 0,
        "outcome": "switched",
        "detail": "drained: it is a replica",
        "old_primary": None,
        "new_primary": "127.0.0.1:7002",
        "pause_ms": None,
    }
    # only steps are kept (the benchmark times them), not progress or the result
    assert [s["event"] for s in steps.done] == ["drain.sidecars_acked"]

    human = io.StringIO()
    Steps(human, clock=clock).result(DrainResult(0, "switched", "drained"))
    assert human.getvalue() == ""
