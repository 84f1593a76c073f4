"""The snapshot cache keeps each profile's last good snapshot when a build fails."""

from __future__ import annotations

from collections.abc import Hashable

from redis_sentinel_watch import Address
from xds.ads.cache import SnapshotCache
from xds.ads.snapshot import Snapshot
from xds.resources.redis_group import GroupSpec
from xds.resources.snapshot import build_snapshot

LISTEN = Address("127.0.0.1", 6379)
GOOD = build_snapshot([GroupSpec("g", LISTEN, Address("127.0.0.1", 7001))])


def broken(_: Hashable) -> Snapshot:
    raise RuntimeError("builder bug")


def test_failed_builds_keep_the_last_good_snapshot_across_generations() -> None:
    """Two failing generations in a row still serve the snapshot of the last good one,
    and a failing build is attempted once per generation, not once per stream."""
    cache = SnapshotCache()
    cache.publish("v1", lambda _: GOOD)
    assert cache.current() is GOOD
    calls = 0

    def counting(profile: Hashable) -> Snapshot:
        nonlocal calls
        calls += 1
        return broken(profile)

    cache.publish("v2", counting)
    assert cache.current() is GOOD
    assert cache.current() is GOOD
    assert calls == 1
    cache.publish("v3", broken)
    assert cache.current() is GOOD
