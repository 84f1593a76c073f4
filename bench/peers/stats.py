"""Turn a writer's attempts into the per-round numbers, and rounds into a summary with noise.

Pure functions, so the definitions that the README table and plots rely on are
written down once and can be unit-tested:

* **window**: the longest time between two consecutive acknowledged writes
  (end to end). About 10 ms when nothing happens (the write interval); during a
  failover it is the time the application could not write. Unlike "first error
  to first success", it also counts a client that hides errors by blocking in
  retries, and a write that hangs instead of failing.
* **error span**: first failed write to the first acknowledged write after it
  (the issue's literal definition; ``None`` when the client saw no error).
* **lost**: acknowledged writes missing from the final primary.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .writer import Attempt

__all__ = ["ColumnRound", "column_round", "spread", "summarize"]


@dataclass(frozen=True)
class ColumnRound:
    """What one column's client experienced in one round."""

    window_s: float
    error_span_s: float | None
    errors: int
    acked: int
    lost: int
    connections: int
    first_error_after_s: float | None  # relative to the trigger
    recovered_after_s: float | None  # first ack after the last error, relative to the trigger
    error_kinds: dict[str, int]

    @property
    def reconnected(self) -> bool:
        return self.connections > 1

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnRound:
        """The inverse of :meth:`to_json` (derived fields are ignored)."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reconnected"] = self.reconnected
        return data


def _kind(error: str) -> str:
    """An error message without its variable parts, to count errors by kind.

    ``"ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused."``
    → ``"ConnectionError: Error 111 connecting to"``: the first few words, with
    anything containing a digit other than an error code dropped.
    """
    words = error.split()
    kept = [w for w in words[:6] if not any(ch.isdigit() for ch in w) or w.isdigit()]
    return " ".join(kept)


def column_round(
    attempts: Sequence[Attempt], trigger_at: float, lost: int, connections: int
) -> ColumnRound:
    """The round's numbers for one column from its attempts (monotonic times)."""
    acked_ends = [a.ended for a in attempts if a.error is None]
    window = max((b - a for a, b in itertools.pairwise(acked_ends)), default=0.0)
    errors = [a for a in attempts if a.error is not None]
    span: float | None = None
    first_error_after: float | None = None
    recovered_after: float | None = None
    if errors:
        first = errors[0].ended
        first_error_after = first - trigger_at
        after_first = [t for t in acked_ends if t > first]
        span = (after_first[0] - first) if after_first else None
        after_last = [t for t in acked_ends if t > errors[-1].ended]
        recovered_after = (after_last[0] - trigger_at) if after_last else None
    kinds = Counter(_kind(a.error) for a in errors if a.error is not None)
    return ColumnRound(
        window_s=window,
        error_span_s=span,
        errors=len(errors),
        acked=len(acked_ends),
        lost=lost,
        connections=connections,
        first_error_after_s=first_error_after,
        recovered_after_s=recovered_after,
        error_kinds=dict(kinds.most_common(5)),
    )


def spread(values: Iterable[float]) -> dict[str, float] | None:
    """Median, quartiles (inclusive method), min and max; None for no values."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        q1 = q3 = data[0]
    else:
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    return {
        "median": statistics.median(data),
        "q1": q1,
        "q3": q3,
        "min": data[0],
        "max": data[-1],
        "n": len(data),
    }


def summarize(rounds: Sequence[ColumnRound]) -> dict[str, Any]:
    """One column over all rounds: spreads of window/errors/lost, and reconnect counts."""
    return {
        "rounds": len(rounds),
        "window_s": spread(r.window_s for r in rounds),
        "error_span_s": spread(r.error_span_s for r in rounds if r.error_span_s is not None),
        "errors": spread(r.errors for r in rounds),
        "lost": spread(r.lost for r in rounds),
        "lost_total": sum(r.lost for r in rounds),
        "rounds_reconnected": sum(1 for r in rounds if r.reconnected),
        "rounds_with_loss": sum(1 for r in rounds if r.lost > 0),
    }
