"""The event-loop watchdog on a real loop: a blocking call is noticed and named."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from tests.support import wait_for
from xds.service.watchdog import LoopWatchdog


def _block_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a slow decode on the loop looks like to everyone else


async def test_stall_is_logged_with_length_task_and_stack_then_rate_limited() -> None:
    """A 400 ms blocking call in a task is logged as loop.stalled with its length, the
    task's name and the blocking function in the stack; a second stall right after is
    counted but not logged (one line per interval); a quiet loop logs nothing."""
    stalls: list[float] = []
    dog = LoopWatchdog(0.25, on_stall=stalls.append, log_interval_s=60)
    with structlog.testing.capture_logs() as logs:
        dog.start()
        try:
            await asyncio.sleep(0.3)
            assert stalls == []  # an idle loop is not stalled
            for seen in range(2):
                await asyncio.create_task(_blocker(0.4), name="slow-decoder")
                await wait_for(_more_than(stalls, seen), 2, "stall noticed")
        finally:
            dog.stop()
    assert len(stalls) == 2 and all(s >= 0.3 for s in stalls), stalls
    lines = [e for e in logs if e["event"] == "loop.stalled"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["stall_ms"] >= 300
    assert "slow-decoder" in (line["task"] or "")
    assert any("_block_the_loop" in frame for frame in line["frames"]), line["frames"]


def _more_than(items: list[float], n: int) -> Callable[[], bool]:
    return lambda: len(items) > n


async def _blocker(seconds: float) -> None:
    _block_the_loop(seconds)
