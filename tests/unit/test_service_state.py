"""What the service derives from its state: one STALE rule for /status and /metrics,
and no snapshot build for a topology change that changes no resource.

A :class:`~xds.service.app.Service` over scripted Sentinels (no listener is
bound); sidecars are registered on its :class:`~xds.ads.sidecars.Sidecars` the way
a stream would, with the versions they were sent and ACKed.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families

from redis_sentinel_watch import Address, FakeSentinelIO, PrimaryChange, Topology
from xds.ads.sidecars import SyncState
from xds.ads.typeurls import short_type
from xds.resources.redis_group import GroupSpec
from xds.service import app
from xds.service.app import Service
from xds.service.config import parse_config

SENTINELS = (Address("127.0.0.1", 26991), Address("127.0.0.1", 26992), Address("127.0.0.1", 26993))
PRIMARY = Address("127.0.0.1", 7421)
REPLICA = Address("127.0.0.1", 7422)


async def _service() -> tuple[Service, FakeSentinelIO]:
    io = FakeSentinelIO()
    for sentinel in SENTINELS:
        io.say(sentinel, "g", PRIMARY, epoch=1, replicas=[REPLICA])
    io.set_role(PRIMARY, "master")
    config = parse_config(
        {
            "sentinels": [str(s) for s in SENTINELS],
            "groups": {"g": {"listen": "127.0.0.1:6394"}},
            "xds": {"listen": "127.0.0.1:18071"},
            "admin": {"listen": "127.0.0.1:9171"},
        }
    )
    svc = Service(config, io=io)
    await svc.watcher.poll_once()
    assert svc.cache.current() is not None
    return svc, io


def _sidecar_samples(svc: Service) -> dict[tuple[str, str], float]:
    """``sentinel_xds_sidecars`` as scraped: (type, state) → value."""
    (family,) = [
        f
        for f in text_string_to_metric_families(svc.metrics.render().decode())
        if f.name == "sentinel_xds_sidecars"
    ]
    return {(s.labels["type"], s.labels["state"]): s.value for s in family.samples}


async def test_a_sidecar_behind_the_served_version_is_stale_in_status_and_metrics() -> None:
    """The new version is published but not yet sent (queued): the sidecar sent and ACKed
    only the old one. ``/status`` and ``/metrics`` both call it STALE, so the
    "STALE for N minutes" alert sees what an operator sees."""
    svc, _ = await _service()
    snapshot = svc.cache.current()
    assert snapshot is not None
    url, served = sorted(snapshot.versions.items())[0]
    behind, current = (
        svc.sidecars.open("127.0.0.1:40001", "sotw"),
        svc.sidecars.open("127.0.0.1:40002", "delta"),
    )
    for sidecar, version in ((behind, "an-older-version"), (current, served)):
        sidecar.node_id = f"node-{sidecar.stream_id}"
        ts = sidecar.type(url)
        ts.requested = True
        ts.sent_version = ts.acked_version = version
    assert behind.type(url).state() is SyncState.SYNCED  # what the raw stream state says

    by_node = {s.node_id: s for s in svc.status().sidecars}
    kind = short_type(url)
    assert by_node[behind.node_id].types[kind].state is SyncState.STALE
    assert by_node[current.node_id].types[kind].state is SyncState.SYNCED
    samples = _sidecar_samples(svc)
    assert samples[(kind, "STALE")] == 1.0
    assert samples[(kind, "SYNCED")] == 1.0


async def test_a_change_that_touches_no_resource_builds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Sentinel going down changes the group's agreeing count and reaches the service
    as a new topology, but every resource stays the same: no snapshot is built (the
    cache would have thrown it away). A real failover still builds one."""
    svc, io = await _service()
    built: list[Sequence[GroupSpec]] = []
    real = app.build_snapshot

    def counting(specs: Sequence[GroupSpec]):  # type: ignore[no-untyped-def]
        built.append(specs)
        return real(specs)

    monkeypatch.setattr(app, "build_snapshot", counting)
    delivered: list[Topology] = []

    def listener(topology: Topology, _changes: Sequence[PrimaryChange]) -> None:
        delivered.append(topology)

    svc.watcher.subscribe(listener)
    generation = svc.cache.generation
    agreeing = svc.watcher.topology.groups[0].agreeing

    io.go_down(SENTINELS[2])
    await svc.watcher.poll_once()
    assert delivered, "the change reached the service's listeners"
    assert delivered[-1].groups[0].agreeing != agreeing
    assert built == []
    assert svc.cache.generation == generation

    for sentinel in SENTINELS[:2]:
        io.say(sentinel, "g", REPLICA, epoch=2, replicas=[PRIMARY])
    io.set_role(REPLICA, "master")
    io.set_role(PRIMARY, "slave")
    await svc.watcher.poll_once()
    assert len(built) == 1 and built[0][0].primary == REPLICA
    assert svc.cache.generation == generation + 1
