"""The empty-replica trap through the whole service: scripted Sentinels, the real admin listener.

A replica that Sentinel still lists healthy but that says itself it is in a
full sync is not promotable: ``sentinel_xds_group_promotable_replicas`` drops
to 0 and ``/readyz`` stays 200 (the control plane still serves) with a
warning that a failover now would lose data; once the replica is synced
again, both come back.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from redis_sentinel_watch import Address, FakeSentinelIO
from tests.support import wait_for
from xds.lab import free_port
from xds.service.app import Service
from xds.service.config import parse_config

SENTINEL = Address("127.0.0.1", 26997)
PRIMARY = Address("127.0.0.1", 7411)
REPLICA = Address("127.0.0.1", 7412)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, FakeSentinelIO]]:
    io = FakeSentinelIO()
    io.say(SENTINEL, "g", PRIMARY, epoch=1, replicas=[REPLICA])
    io.add_node(PRIMARY)
    io.add_node(REPLICA, PRIMARY)
    config = {
        "sentinels": [str(SENTINEL)],
        "groups": {"g": {"listen": "127.0.0.1:6393"}},
        "xds": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": f"127.0.0.1:{free_port()}"},
        "watch": {"poll_interval_s": 0.05},
    }
    svc = Service(parse_config(config), io=io)
    await svc.startup()
    try:
        await wait_for(lambda: svc.cache.current() is not None, 10, "first snapshot")
        yield svc, io
    finally:
        await svc.shutdown(0)


async def _get(svc: Service, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{svc.admin.port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def _promotable(svc: Service) -> float | None:
    _, text = await _get(svc, "/metrics")
    found = re.search(r'^sentinel_xds_group_promotable_replicas\{group="g"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


async def _poll_until(value: float, svc: Service, what: str) -> None:
    """Until the gauge on /metrics shows ``value`` (deadline 10 s)."""
    deadline = time.monotonic() + 10
    while await _promotable(svc) != value:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_unsynced_replica_drops_the_gauge_and_warns_in_readyz(
    service: tuple[Service, FakeSentinelIO],
) -> None:
    svc, io = service
    await _poll_until(1.0, svc, "the synced replica to count")
    status, body = await _get(svc, "/readyz")
    assert (status, '"reason": "ok"' in body) == (200, True)

    io.nodes[REPLICA].link_up, io.nodes[REPLICA].sync_in_progress = False, True
    await _poll_until(0.0, svc, "the resyncing replica to stop counting")
    status, body = await _get(svc, "/readyz")
    assert status == 200
    assert (
        "ok; warning: group g has no synced replica: a failover now would lose data "
        f"({REPLICA} unsynced: "
    ) in body
    assert svc.status().groups[0].replica_sync[0].sync.value == "unsynced"

    io.nodes[REPLICA].link_up, io.nodes[REPLICA].sync_in_progress = True, False
    await _poll_until(1.0, svc, "the replica to count again once synced")
    status, body = await _get(svc, "/readyz")
    assert (status, '"reason": "ok"' in body) == (200, True)
