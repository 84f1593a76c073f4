"""A token bucket for the per-stream request rate (``xds.max_requests_per_second``).

A healthy Envoy sends a few requests per topology change (an ACK per
response, a request for a new ClusterLoadAssignment). A client that sends
thousands per second, by bug or on purpose, would take the event loop from
every other sidecar. Its requests are not dropped (dropping an ACK would
break the protocol) but delayed: the stream stops reading until the bucket
refills, and gRPC flow control then pushes back on the client itself.
"""

from __future__ import annotations

__all__ = ["MIN_BURST", "TokenBucket"]

#: the bucket holds at least this many requests, so a stream's opening burst
#: (one request per type, then ACKs) is never delayed even with a low rate
MIN_BURST = 10.0


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` (default: one second's worth, at least
    :data:`MIN_BURST`). Time is passed in, so it is deterministic to test."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, MIN_BURST)
        self._tokens = self.burst
        self._stamp: float | None = None

    def take(self, now: float) -> float:
        """Take one token at time ``now``; the seconds to wait before using it (0: none).

        A token taken while the bucket is empty is a reservation: the bucket
        goes below zero and the caller waits until it is back at zero, so a
        client that keeps sending is held to exactly ``rate``.
        """
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
