"""Per-sidecar state: who is connected, and what each has been sent, ACKed and NACKed.

The protocol layer writes it; ``/status``, ``/metrics``, the failover timeline
and ``drain`` read it. It holds no protocol logic of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "NullObserver",
    "Sidecar",
    "Sidecars",
    "SyncState",
    "TypeState",
    "Version",
    "XdsObserver",
    "effective_state",
]


class SyncState(StrEnum):
    SYNCED = "SYNCED"  # ACKed the latest version we have for it
    STALE = "STALE"  # has not ACKed the latest version (in flight, or slow)
    NACKED = "NACKED"  # rejected the latest version it was sent
    NOT_SENT = "NOT_SENT"  # never subscribed to this type


@dataclass
class TypeState:
    """One resource type on one stream."""

    subscribed: frozenset[str] = frozenset()
    wildcard: bool = False
    requested: bool = False  # has sent at least one request for this type
    sent_version: str = ""
    sent_nonce: str = ""
    sent_names: frozenset[str] = frozenset()
    sent_at: float | None = None  # monotonic
    acked_version: str = ""
    acked_at: float | None = None  # monotonic
    nacked_version: str = ""
    nack_detail: str = ""
    nacks: int = 0

    def state(self) -> SyncState:
        if not self.requested:
            return SyncState.NOT_SENT
        if self.nacked_version and self.nacked_version == self.sent_version:
            return SyncState.NACKED
        if self.sent_version and self.acked_version == self.sent_version:
            return SyncState.SYNCED
        return SyncState.STALE


def effective_state(ts: TypeState, served_version: str | None) -> SyncState:
    """``ts``'s state judged against ``served_version``, what is served now (None: unknown).

    :meth:`TypeState.state` knows only what this stream was sent: a sidecar that
    ACKed everything it was sent, while a newer version waits in the stream's
    queue, is SYNCED there. Everyone who reports sync state to people
    (``/status``, the ``sentinel_xds_sidecars`` gauge and its alert) must call it
    STALE, and the same way, so this is the one rule they use.
    """
    state = ts.state()
    if state is SyncState.SYNCED and served_version and ts.acked_version != served_version:
        return SyncState.STALE
    return state


@dataclass
class Sidecar:
    """One connected ADS stream (normally one Envoy)."""

    stream_id: int
    peer: str
    protocol: str  # "sotw" or "delta"
    node_id: str = ""
    cluster: str = ""
    envoy_version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    profile: Hashable = None  # which snapshot it is served (see xds.ads.cache)
    connected_at: float = field(default_factory=time.time)  # wall clock, for people
    types: dict[str, TypeState] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeState:
        state = self.types.get(type_url)
        if state is None:
            state = self.types[type_url] = TypeState()
        return state


#: a version, or the version each sidecar should have (see :meth:`Sidecars.acked_count`)
Version = str | Callable[[Sidecar], str]


class XdsObserver(Protocol):
    """Told about every push, ACK and NACK (metrics); the protocol layer calls it.

    An interface rather than a metrics import keeps the protocol layer free of
    any monitoring library; :class:`xds.service.metrics.Metrics` implements it.
    """

    def pushed(self, type_url: str) -> None: ...

    def acked(self, type_url: str, latency_s: float | None) -> None: ...

    def nacked(self, type_url: str) -> None: ...

    def stream_refused(self, reason: str = "max_streams") -> None:
        """A stream was refused or closed early, and why (see :data:`xds.ads.limits.REASONS`):
        ``max_streams``, ``max_streams_per_peer``, ``first_request_timeout``, ``node_limits``."""
        ...

    def rate_limited(self) -> None:
        """A request was delayed by ``xds.max_requests_per_second``."""
        ...


class NullObserver:
    """Observes nothing (the default, and in tests of the protocol layer)."""

    def pushed(self, type_url: str) -> None:
        pass

    def acked(self, type_url: str, latency_s: float | None) -> None:
        pass

    def nacked(self, type_url: str) -> None:
        pass

    def stream_refused(self, reason: str = "max_streams") -> None:
        pass

    def rate_limited(self) -> None:
        pass


class Sidecars:
    """Registry of connected sidecars, with a way to wait for ACKs."""

    def __init__(self, observer: XdsObserver | None = None) -> None:
        self._by_stream: dict[int, Sidecar] = {}
        self._next_id = 0
        self._progress: asyncio.Future[None] | None = None
        self.observer: XdsObserver = observer or NullObserver()

    def open(self, peer: str, protocol: str) -> Sidecar:
        self._next_id += 1
        sidecar = Sidecar(self._next_id, peer, protocol)
        self._by_stream[sidecar.stream_id] = sidecar
        return sidecar

    def close(self, sidecar: Sidecar) -> None:
        self._by_stream.pop(sidecar.stream_id, None)
        self.notify()

    def all(self) -> list[Sidecar]:
        return list(self._by_stream.values())

    def is_open(self, sidecar: Sidecar) -> bool:
        """Whether ``sidecar``'s stream is still connected."""
        return self._by_stream.get(sidecar.stream_id) is sidecar

    def __len__(self) -> int:
        return len(self._by_stream)

    def notify(self) -> None:
        """Something was ACKed, NACKed or disconnected: wake waiters."""
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)

    def acked_count(self, type_url: str, version: Version) -> tuple[int, int]:
        """(sidecars that ACKed ``version`` of ``type_url``, sidecars subscribed to it).

        ``version`` may be a function of the sidecar: sidecars with different
        profiles are served different snapshots, so different versions.
        """
        subscribed = [s for s in self._by_stream.values() if s.type(type_url).requested]
        acked = sum(
            1
            for s in subscribed
            if s.type(type_url).acked_version == (version(s) if callable(version) else version)
        )
        return acked, len(subscribed)

    async def wait_acked(
        self, type_url: str, version: Version, within_s: float
    ) -> tuple[int, int]:
        """Wait until every subscribed sidecar ACKed ``version`` or ``within_s`` passed.

        Returns (acked, subscribed) at that moment.
        """
        deadline = time.monotonic() + within_s
        while True:
            acked, total = self.acked_count(type_url, version)
            remaining = deadline - time.monotonic()
            if acked >= total or remaining <= 0:
                return acked, total
            if self._progress is None or self._progress.done():
                self._progress = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._progress), remaining)
            except TimeoutError:
                return self.acked_count(type_url, version)

    async def wait_for(self, done: Callable[[], bool], within_s: float) -> bool:
        """Wait until ``done()`` is true, re-checking at every ACK, NACK or disconnect.

        Returns ``done()`` at the end (False if ``within_s`` passed first).
        """
        deadline = time.monotonic() + within_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._progress is None or self._progress.done():
                self._progress = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._progress), remaining)
            except TimeoutError:
                return done()
        return True
