"""The snapshot cache: the one narrow interface between "what to serve" and the protocol.

The protocol layer (:mod:`xds.server`) never learns where snapshots come
from; it only calls :meth:`SnapshotCache.current` and awaits
:meth:`SnapshotCache.changed`. Whoever owns the topology (the service) calls
:meth:`SnapshotCache.set`. One future per generation wakes every stream at once,
so a push to a thousand streams costs one wake-up each, not a poll.
"""

from __future__ import annotations

import asyncio

import structlog

from .snapshot import Snapshot

__all__ = ["SnapshotCache"]

log = structlog.get_logger("xds.cache")


class SnapshotCache:
    """Holds the current :class:`Snapshot` and wakes streams when it changes."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._changed: asyncio.Future[None] | None = None
        self.generation = 0

    def current(self) -> Snapshot | None:
        return self._snapshot

    def changed(self) -> asyncio.Future[None]:
        """A future that completes at the next :meth:`set` that changes anything."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def set(self, snapshot: Snapshot) -> bool:
        """Publish ``snapshot`` after checking it; returns False if nothing changed.

        An inconsistent snapshot raises and is not published: streams keep the
        last good one.
        """
        snapshot.consistent()
        if self._snapshot is not None and self._snapshot.versions == snapshot.versions:
            return False
        self._snapshot = snapshot
        self.generation += 1
        log.debug("cache.set", generation=self.generation, versions=snapshot.versions)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        return True
