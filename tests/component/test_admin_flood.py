"""``/healthz`` keeps answering while ``/status`` is flooded (issue 12).

500 clients send ``GET /status`` on new connections again and again
(:mod:`tests.admin_flood`, a process of its own) while ``/healthz`` is probed
21 times. Asserted: the flood happened (at least 1,000 answers, none failed,
only 200 or 503), and no probe was dropped: every one under 950 ms. Before
the fix a burst overflowed the listen backlog (128), the kernel dropped the
probe's SYN and ``/healthz`` answered after the 1 s SYN retry, failing a
liveness probe with a 1 s timeout (measured with the old backlog: max
1,120 ms). How fast the probes are (the issue's "within 100 ms") is a speed
target: ``bench/admin_flood.py`` measures it, with and without the flood.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests.admin_flood import (
    BURST,
    MAX_BOUND_S,
    PROBES,
    ServerThread,
    flooding,
    healthz,
    stop_flood,
)


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Info level, as the service runs (per-request ``admin.request`` lines are debug)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))
    try:
        yield
    finally:
        structlog.reset_defaults()


def test_healthz_answers_while_status_is_flooded(quiet_logs: None) -> None:
    """Every /healthz probe is answered, none after a dropped SYN, during a /status flood."""
    with ServerThread() as port, flooding(port) as flood:
        probes = [healthz(port) for _ in range(PROBES)]
        summary = stop_flood(flood)
    shown = f"healthz ms: {[round(p * 1000, 1) for p in probes]}; flood: {summary}"
    assert isinstance(summary["answered"], int) and summary["answered"] >= 2 * BURST, shown
    assert summary["failed"] == 0, shown
    assert set(summary["statuses"]) <= {"200", "503"}, shown  # type: ignore[arg-type]
    assert max(probes) <= MAX_BOUND_S, shown
