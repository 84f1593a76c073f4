"""What a drain prints and returns: timed step lines (or JSON lines) and a :class:`DrainResult`.

An operator watches a switchover live (``+<ms>  <event>  <detail>``), a
script reads the same steps as JSON lines, and the CLI, the tests and the
benchmark all read the outcome from one value; none of that is the
procedure itself (:mod:`xds.ops.drain`), which only says what happened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from redis_sentinel_watch import Address
from xds.ops.drain_plan import DEFAULT_PRIORITY
from xds.ops.exits import EXIT_PROBLEMS

__all__ = ["EXIT_FAILED", "DrainResult", "Progress", "Steps", "undrain_hint"]

EXIT_FAILED = EXIT_PROBLEMS  # the drain did not complete (and was undone)

Progress = Callable[[str], None]


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
    """Prints each step as it happens (human lines or JSON lines) and keeps them."""

    def __init__(
        self, out: TextIO, json_lines: bool = False, progress: Progress | None = None
    ) -> None:
        self._out = out
        self._json = json_lines
        self._progress = progress
        self.started = time.monotonic()
        self.done: list[dict[str, Any]] = []

    def ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)

    def __call__(self, event: str, detail: str, **fields: Any) -> None:
        record = {"ms": self.ms(), "event": event, "detail": detail, **fields}
        self.done.append(record)
        if self._json:
            self._out.write(json.dumps(record, default=str) + "\n")
        else:
            self._out.write(f"+{record['ms']:>9.1f} ms  {event:<24} {detail}\n")
        self._out.flush()
        if self._progress is not None:
            self._progress(event)

    def say(self, text: str) -> None:
        if self._json:
            self._out.write(json.dumps({"ms": self.ms(), "event": "drain.info", "detail": text}))
            self._out.write("\n")
        else:
            self._out.write(text + "\n")
        self._out.flush()



def undrain_hint(group: str, node: Address, previous: int | None) -> str:
    """Where the previous priority is not Redis' default, say how to get it back."""
    if previous in (None, 0, DEFAULT_PRIORITY):
        return ""
    return (
        f" (it had replica-priority {previous}: sentinel-xds undrain {group} {node} "
        f"--priority {previous})"
    )
