"""The per-stream token bucket (xds.ads.ratelimit): bursts pass, floods are held to the rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xds.ads.ratelimit import MIN_BURST, TokenBucket


def test_burst_passes_then_requests_wait_exactly_one_interval_each() -> None:
    """A full bucket lets `burst` requests through at once; each further one waits 1/rate
    more than the one before (a reservation), so a flood gets exactly `rate` per second."""
    bucket = TokenBucket(rate=10.0)
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    waits = [bucket.take(0.0) for _ in range(3)]
    assert waits == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_with_time_up_to_burst() -> None:
    """An idle stream gets its burst back, and never more than the burst."""
    bucket = TokenBucket(rate=2.0, burst=4.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.take(0.0) > 0
    assert [bucket.take(100.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(100.0) > 0


def test_low_rates_still_allow_an_opening_burst() -> None:
    """A stream's opening requests (one per type, then ACKs) are not delayed even at 1/s."""
    bucket = TokenBucket(rate=1.0)
    assert bucket.burst == MIN_BURST
    assert all(bucket.take(0.0) == 0.0 for _ in range(int(MIN_BURST)))


@given(
    st.floats(min_value=0.5, max_value=1000),
    st.lists(st.floats(min_value=0, max_value=2), min_size=1, max_size=200),
)
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, gaps: list[float]) -> None:
    """Whatever the arrival times, requests let through by time t (arrival + wait) never
    exceed burst + rate * t."""
    bucket = TokenBucket(rate)
    now, released = 0.0, []
    for gap in gaps:
        now += gap
        released.append(now + bucket.take(now))
    for i, t in enumerate(sorted(released)):
        assert i + 1 <= bucket.burst + rate * t + 1e-6


def test_rate_must_be_positive() -> None:
    """A zero rate is a programming error (the config refuses it first)."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


def test_config_rate_default_and_explicit() -> None:
    """xds.max_requests_per_second defaults to 100 per stream and accepts any positive
    number (the corpus covers the refusals)."""
    from xds.service.config import load_config_text

    base = 'sentinels: ["127.0.0.1:26379"]\ngroups: {g: {listen: "127.0.0.1:6379"}}\n'
    default = load_config_text(base + 'xds: {listen: "127.0.0.1:18000"}\n')
    assert default.xds_max_requests_per_second == 100.0
    given = load_config_text(
        base + 'xds: {listen: "127.0.0.1:18000", max_requests_per_second: 2.5}\n'
    )
    assert given.xds_max_requests_per_second == 2.5
