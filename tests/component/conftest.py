"""The real grpcio ADS server on a free loopback port, and snapshot helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from redis_sentinel_watch import Address
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import Snapshot
from xds.resources.redis_group import GroupSpec
from xds.resources.snapshot import build_snapshot

A = Address("127.0.0.1", 7001)
B = Address("127.0.0.1", 7002)
C = Address("127.0.0.1", 7003)
LISTEN = Address("127.0.0.1", 6390)
LISTEN_2 = Address("127.0.0.1", 6391)


def snap(primary: Address, *, op_timeout_ms: int = 5000) -> Snapshot:
    """One group, ``mymaster``, on ``primary``."""
    return build_snapshot([GroupSpec("mymaster", LISTEN, primary, op_timeout_ms=op_timeout_ms)])


def two_groups(primary: Address, other: Address) -> Snapshot:
    return build_snapshot(
        [GroupSpec("mymaster", LISTEN, primary), GroupSpec("other", LISTEN_2, other)]
    )


@pytest.fixture
async def server() -> AsyncIterator[XdsServer]:
    srv = XdsServer(SnapshotCache(), Sidecars())
    await srv.start("127.0.0.1", 0)
    yield srv
    await srv.stop(0)
