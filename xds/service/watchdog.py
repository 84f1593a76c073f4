"""Notices an event loop that stalls, and says what was running at the time.

Everything the control plane does (Sentinel events and polls, the promotion
probe, the fence, snapshot builds, pushes, the admin API) shares one asyncio
loop, so any callback that holds it for long delays a failover. The limits on
what clients send (:mod:`xds.ads.limits`, :mod:`xds.ads.node`) are meant to
make that impossible; this makes a regression, or a cause nobody thought of,
visible instead of silent.

How: a heartbeat callback on the loop every :data:`INTERVAL_S` stamps the time;
a daemon thread checks the stamp. When it is older than the threshold the
thread samples the main thread's stack (``sys._current_frames()``) and the
task the loop is running (``asyncio.current_task(loop)``) *during* the stall,
which is the only moment they say what is stalling. When the loop runs the
heartbeat again it knows the stall's length and logs ``loop.stalled`` with
the sample, at most once per :data:`LOG_INTERVAL_S` (with how many stalls
went unlogged). A stall still going on after :data:`ONGOING_REPORT_S` is
logged by the thread itself (``ongoing=True``), since the loop may never
come back. Every stall is counted (``on_stall``, a Prometheus counter).
Sampling costs a thread waking every 50 ms: nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections.abc import Callable

import structlog

__all__ = ["DEFAULT_THRESHOLD_S", "LoopWatchdog"]

log = structlog.get_logger("xds.watchdog")

DEFAULT_THRESHOLD_S = 0.25
INTERVAL_S = 0.05
LOG_INTERVAL_S = 10.0
ONGOING_REPORT_S = 5.0
#: innermost frames of the stalled stack that are logged
STACK_FRAMES = 8


class LoopWatchdog:
    """Start it on the running loop (:meth:`start`), :meth:`stop` it before the loop ends."""

    def __init__(
        self,
        threshold_s: float = DEFAULT_THRESHOLD_S,
        *,
        on_stall: Callable[[float], None] | None = None,
        log_interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.threshold_s = threshold_s
        self.log_interval_s = log_interval_s
        self.stalls = 0
        self._on_stall = on_stall
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_thread = 0
        self._beat_at = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        # (the heartbeat it was late for, what was running): taken by the thread, read by the loop
        self._sample: tuple[float, dict[str, object]] | None = None
        self._ongoing_logged = False
        self._logged_at: float | None = None
        self._unlogged = 0
        self._unlogged_max_ms = 0.0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_thread = threading.get_ident()
        self._beat_at = time.monotonic()
        self._handle = self._loop.call_later(INTERVAL_S, self._beat)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    # ------------------------------------------------------------------ on the loop

    def _beat(self) -> None:
        now = time.monotonic()
        last, self._beat_at = self._beat_at, now
        stall = now - last - INTERVAL_S
        taken, self._sample = self._sample, None
        self._ongoing_logged = False
        if stall > self.threshold_s:
            self._stalled(now, stall, taken[1] if taken and taken[0] == last else None)
        if not self._stopped.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(INTERVAL_S, self._beat)

    def _stalled(self, now: float, stall: float, sample: dict[str, object] | None) -> None:
        self.stalls += 1
        if self._on_stall is not None:
            self._on_stall(stall)
        ms = round(stall * 1000, 1)
        if self._logged_at is not None and now - self._logged_at < self.log_interval_s:
            self._unlogged += 1
            self._unlogged_max_ms = max(self._unlogged_max_ms, ms)
            return
        self._logged_at = now
        log.warning(
            "loop.stalled",
            stall_ms=ms,
            threshold_ms=round(self.threshold_s * 1000),
            not_logged_since_last=self._unlogged,
            not_logged_max_ms=self._unlogged_max_ms,
            **(sample or {"task": None, "frames": []}),
        )
        self._unlogged, self._unlogged_max_ms = 0, 0.0

    # ------------------------------------------------------------------ on the thread

    def _watch(self) -> None:
        while not self._stopped.wait(INTERVAL_S):
            beat_at = self._beat_at
            late = time.monotonic() - beat_at - INTERVAL_S
            if late <= self.threshold_s:
                continue
            taken = self._sample
            if taken is None or taken[0] != beat_at:
                taken = self._sample = (beat_at, self._take_sample())
            if late > ONGOING_REPORT_S and not self._ongoing_logged:
                self._ongoing_logged = True
                log.error("loop.stalled", stall_ms=round(late * 1000, 1), ongoing=True, **taken[1])

    def _take_sample(self) -> dict[str, object]:
        """What the main thread is doing now: its innermost frames and the current task."""
        frame = sys._current_frames().get(self._main_thread)
        stack = (
            [
                f"{f.filename}:{f.lineno} {f.name}"
                for f in traceback.extract_stack(frame)[-STACK_FRAMES:]
            ]
            if frame is not None
            else []
        )
        task_name: str | None = None
        with contextlib.suppress(Exception):  # reading another thread's loop state: best effort
            task = asyncio.current_task(self._loop)
            if task is not None:
                task_name = f"{task.get_name()} {task.get_coro()!r}"
        return {"task": task_name, "frames": stack}
