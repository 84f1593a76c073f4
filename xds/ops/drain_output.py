"""What a drain prints and returns: timed step lines (or JSON lines) and a :class:`DrainResult`.

An operator watches a switchover live (``+<ms>  <event>  <detail>``), a
script reads the same steps as JSON lines, and the CLI, the tests and the
benchmark all read the outcome from one value; none of that is the
procedure itself (:mod:`xds.ops.drain`), which only says what happened.

A drain spends most of its time waiting (for Sentinel to read a priority
every 10 s, for sidecars to ACK), and a silent terminal for 9 s looks like a
hang. So each wait is a :class:`Wait`: it says what it waits for when it
starts, and its polling loop reports what it sees on every poll; a line is
printed when what it sees changes (at most every :data:`CHANGE_GAP_S`) and
otherwise every :data:`PROGRESS_INTERVAL_S`, so a 9 s wait prints ~9 lines
and a 10 ms one none. With ``--json`` every line is one JSON object (``event``
``drain.wait_started`` / ``drain.waiting`` / a step / ``drain.info``) and the
last one is ``drain.result`` with the exit code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TextIO

from redis_sentinel_watch import Address
from xds.ops.drain_plan import DEFAULT_PRIORITY
from xds.ops.exits import EXIT_PROBLEMS

__all__ = [
    "CHANGE_GAP_S",
    "EXIT_FAILED",
    "PROGRESS_INTERVAL_S",
    "DrainResult",
    "Progress",
    "Steps",
    "Wait",
    "undrain_hint",
]

EXIT_FAILED = EXIT_PROBLEMS  # the drain did not complete (and was undone)

#: a wait prints what it sees at least this often (issue 14: "at least every second")
PROGRESS_INTERVAL_S = 1.0
#: ... and as soon as that changes, but not more often than this (an offset that
#: climbs on every 2 ms poll must not flood the terminal)
CHANGE_GAP_S = 0.2

Progress = Callable[[str], None]
Clock = Callable[[], float]


@dataclass
class DrainResult:
    """What happened, for the CLI's exit code, the tests and the benchmark."""

    exit_code: int
    outcome: str  # switched | drained | already-drained | undrained | not-drained | refused …
    message: str
    old_primary: Address | None = None
    new_primary: Address | None = None
    pause_ms: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)


class Steps:
    """Prints each step as it happens (human lines or JSON lines) and keeps them.

    Only steps are kept in :attr:`done` (the benchmark times them); the
    progress of a wait and the final result are printed, not kept.
    """

    def __init__(
        self,
        out: TextIO,
        json_lines: bool = False,
        progress: Progress | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._out = out
        self._json = json_lines
        self._progress = progress
        self.clock = clock
        self.started = clock()
        self.done: list[dict[str, Any]] = []

    def ms(self) -> float:
        return round((self.clock() - self.started) * 1000, 1)

    def _print(self, record: dict[str, Any]) -> None:
        if self._json:
            self._out.write(json.dumps(record, default=str) + "\n")
        else:
            self._out.write(f"+{record['ms']:>9.1f} ms  {record['event']:<24} {record['detail']}\n")
        self._out.flush()

    def __call__(self, event: str, detail: str, **fields: Any) -> None:
        record = {"ms": self.ms(), "event": event, "detail": detail, **fields}
        self.done.append(record)
        self._print(record)
        if self._progress is not None:
            self._progress(event)

    def say(self, text: str) -> None:
        if self._json:
            self._print({"ms": self.ms(), "event": "drain.info", "detail": text})
        else:
            self._out.write(text + "\n")
            self._out.flush()

    def wait(self, what: str, **fields: Any) -> Wait:
        """Start a wait for ``what`` ("a Sentinel majority (2 of 3) to ..."): says so now;
        the polling loop then calls :meth:`Wait.saw` on every poll."""
        self._print(
            {
                "ms": self.ms(),
                "event": "drain.wait_started",
                "detail": f"waiting for {what}",
                "what": what,
                **fields,
            }
        )
        return Wait(self, what)

    def waiting(self, what: str, seen: str, elapsed_s: float, **fields: Any) -> None:
        """One progress line of a wait (see :class:`Wait` for when)."""
        self._print(
            {
                "ms": self.ms(),
                "event": "drain.waiting",
                "detail": f"waiting for {what}: {seen} ({elapsed_s:.1f} s)",
                "what": what,
                "seen": seen,
                "elapsed_s": round(elapsed_s, 1),
                **fields,
            }
        )

    def result(self, result: DrainResult) -> None:
        """With ``--json``, the last line: the outcome and the exit code. A terminal has
        already read the summary line, which stays the last one there."""
        if not self._json:
            return
        self._print(
            {
                "ms": self.ms(),
                "event": "drain.result",
                "exit_code": result.exit_code,
                "outcome": result.outcome,
                "detail": result.message,
                "old_primary": result.old_primary,
                "new_primary": result.new_primary,
                "pause_ms": result.pause_ms,
            }
        )


class Wait:
    """The progress of one wait. Its loop calls :meth:`saw` on every poll (cheap: a
    clock read and a comparison); a line is printed when ``key`` (what is seen,
    by default ``seen`` itself) differs from the last printed one and
    :data:`CHANGE_GAP_S` have passed since the last line, or when the next line
    is due. Lines fall due every :data:`PROGRESS_INTERVAL_S` on a grid from the
    start (1 s, 2 s, ...), not that long after the last line: a line is printed
    on the first poll past its time, and measuring from it would let each
    poll's lateness add up (seen: 1.02 s apart with a 0.2 s poll). The first
    poll only sets what "changed" is compared with: the start line was just printed.
    """

    _UNSET: Hashable = object()

    def __init__(self, steps: Steps, what: str) -> None:
        self._steps = steps
        self.what = what
        self.started = steps.clock()
        self._last_at = self.started
        self._due = self.started + PROGRESS_INTERVAL_S
        self._last_key: Hashable = self._UNSET

    def due_in(self) -> float:
        """Seconds until the next line is due (0 if it is): a loop that sleeps between
        polls sleeps no longer than this, so the line is not a whole poll late."""
        return max(0.0, self._due - self._steps.clock())

    def saw(self, seen: str, key: Hashable = None, **fields: Any) -> bool:
        """What this poll sees (``seen`` is printed; ``key``, when given, is what is
        compared: "2 of 3" rather than offsets that move on every poll). True if printed."""
        now = self._steps.clock()
        k = seen if key is None else key
        if self._last_key is self._UNSET:
            self._last_key = k
        changed = k != self._last_key and now - self._last_at >= CHANGE_GAP_S
        if now < self._due and not changed:
            return False
        if now >= self._due:
            # next on the grid; a poll slower than the interval starts a new grid
            self._due = self._due + PROGRESS_INTERVAL_S
            if self._due <= now:
                self._due = now + PROGRESS_INTERVAL_S
        else:
            self._due = now + PROGRESS_INTERVAL_S  # a change: a full interval from it
        self._last_at, self._last_key = now, k
        self._steps.waiting(self.what, seen, now - self.started, **fields)
        return True


def undrain_hint(group: str, node: Address, previous: int | None) -> str:
    """Where the previous priority is not Redis' default, say how to get it back."""
    if previous in (None, 0, DEFAULT_PRIORITY):
        return ""
    return (
        f" (it had replica-priority {previous}: sentinel-xds undrain {group} {node} "
        f"--priority {previous})"
    )
