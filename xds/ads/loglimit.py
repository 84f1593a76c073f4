"""At most one log line per key per interval, with the count of the lines skipped.

Whoever can make the service refuse something (a stream over a limit, a
request without a token, a bad drain notice) decides how many refusals there
are; the log must not grow with them. Every such place keeps one line per
reason per interval and says how many it left out. It lives in the protocol
package because the protocol server needs it and may import nothing of the
rest of ``xds``; the service imports it from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LogLimiter"]


class LogLimiter:
    """At most one log line per key per ``interval_s``, with the count of the ones skipped."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to skip this line; else how many lines of ``key`` were skipped before it."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        if len(self._last) > 1000:  # keys are few (reason, route); never unbounded
            self._last.clear()
            self._skipped.clear()
        self._last[key] = now
        return self._skipped.pop(key, 0)
