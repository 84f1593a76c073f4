"""The snapshot cache: the one narrow interface between "what to serve" and the protocol.

The protocol layer (:mod:`xds.ads.sotw`, :mod:`xds.ads.delta`) never learns where
snapshots come from. A stream asks :meth:`SnapshotCache.profile_of` which
*profile* its node has (an opaque, hashable key: which groups it receives and
where it listens; the service decides), then reads
:meth:`SnapshotCache.current` for that profile and awaits
:meth:`SnapshotCache.changed`.

Whoever owns the topology (the service) calls :meth:`SnapshotCache.publish`
with a builder, once per topology version. A profile's snapshot is built the
first time a stream of that profile asks for it and then shared by every
stream with that profile until the next publish, so a thousand identical
sidecars cost one build and one serialization. One future per generation wakes
every stream at once, so a push to a thousand streams costs one wake-up each,
not a poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

import structlog

from xds.ads.discovery_request import NodeInfo
from xds.ads.snapshot import Snapshot

__all__ = ["Builder", "ProfileOf", "SnapshotCache"]

log = structlog.get_logger("xds.cache")

#: profile → the snapshot every node with that profile receives
Builder = Callable[[Hashable], Snapshot]
#: a node (``None`` if the stream sent none) → its profile
ProfileOf = Callable[[NodeInfo | None], Hashable]


def _same_for_everyone(_: NodeInfo | None) -> Hashable:
    return None


class SnapshotCache:
    """Holds the current builder, the snapshots built from it, and wakes streams on change."""

    def __init__(self, profile_of: ProfileOf | None = None) -> None:
        self._profile_of: ProfileOf = profile_of or _same_for_everyone
        self._key: Hashable = None
        self._build: Builder | None = None
        self._built: dict[Hashable, Snapshot] = {}
        self._last_good: dict[Hashable, Snapshot] = {}  # per profile, across generations
        self._failed: set[Hashable] = set()  # profiles whose build failed this generation
        self._changed: asyncio.Future[None] | None = None
        self.generation = 0

    def set_profile_of(self, profile_of: ProfileOf) -> None:
        """Install the node → profile rule: streams that open from now on get it, open
        ones keep the profile they were given."""
        self._profile_of = profile_of

    def profile_of(self, node: NodeInfo | None) -> Hashable:
        return self._profile_of(node)

    def current(self, profile: Hashable = None) -> Snapshot | None:
        """The snapshot for ``profile`` at the current generation (built on first use).

        If building fails (a bug: builders are pure and checked), the error is
        logged once per generation and the profile keeps its last good snapshot,
        however many generations ago that was, so its sidecars keep their config.
        """
        snap = self._built.get(profile)
        if snap is not None or self._build is None:
            return snap
        if profile in self._failed:
            return self._last_good.get(profile)
        try:
            snap = self._build(profile)
            snap.consistent()
        except Exception as exc:
            self._failed.add(profile)
            log.error("cache.build_failed", profile=repr(profile), error=str(exc))
            return self._last_good.get(profile)
        self._built[profile] = self._last_good[profile] = snap
        return snap

    def changed(self) -> asyncio.Future[None]:
        """A future that completes at the next publish that changes anything."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def is_current(self, key: Hashable) -> bool:
        """Whether ``key`` is what is published now (so :meth:`publish` would be a no-op):
        the caller can skip building snapshots that would be thrown away."""
        return self._build is not None and key == self._key

    def publish(self, key: Hashable, build: Builder) -> bool:
        """Serve snapshots from ``build`` from now on; False (and no-op) if ``key`` is unchanged.

        ``key`` identifies everything ``build`` depends on (the topology and
        config), so an unchanged topology wakes no stream.
        """
        if self.is_current(key):
            return False
        self._key, self._build = key, build
        self._built, self._failed = {}, set()
        self.generation += 1
        log.debug("cache.publish", generation=self.generation)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        return True

    def set(self, snapshot: Snapshot) -> bool:
        """Serve ``snapshot`` to every profile; False if its versions are unchanged.

        An inconsistent snapshot raises and is not published: streams keep the
        last good one.
        """
        snapshot.consistent()
        return self.publish(tuple(sorted(snapshot.versions.items())), lambda _: snapshot)
