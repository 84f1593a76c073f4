"""The ADS server against real Envoy sidecars: Delta, NACKs, and per-node resources.

The control plane's protocol layer runs in the test process (the same
``XdsServer``, cache and profile rules the service uses) so a test can publish
exactly the topology it needs; Envoy is the real binary. What is asserted is
what Envoy reports on its admin API (clusters, listeners, stats), plus the
per-sidecar state the control plane shows in ``/status``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from redis_sentinel_watch import Address
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecar, Sidecars, SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.lab import EnvoyProcess, free_port, wait_until
from xds.resources.bootstrap import AdsMode, bootstrap_yaml
from xds.resources.profiles import Profiles
from xds.resources.redis_group import GroupSpec
from xds.service.admin_build import sidecar_state
from xds.service.config import Config, parse_config

pytestmark = pytest.mark.integration

T = TypeVar("T")
A = Address("127.0.0.1", 7101)
B = Address("127.0.0.1", 7102)


class ControlPlane:
    """The protocol layer of the service, fed with hand-made topologies."""

    def __init__(self, config: Config) -> None:
        self.profiles = Profiles(config.groups)
        self.cache = SnapshotCache(self.profiles.of)
        self.server = XdsServer(self.cache, Sidecars())

    def publish(self, specs: Sequence[GroupSpec]) -> None:
        frozen = tuple(specs)
        self.cache.publish(frozen, lambda p: self.profiles.snapshot(p, frozen))  # type: ignore[arg-type]

    def sidecar(self, node_id: str) -> Sidecar | None:
        return next((s for s in self.server.sidecars.all() if s.node_id == node_id), None)


def config(groups: dict[str, Any]) -> Config:
    return parse_config(
        {"sentinels": ["127.0.0.1:26379"], "groups": groups, "xds": {"listen": "127.0.0.1:1"}}
    )


@pytest.fixture
async def started() -> AsyncIterator[list[Any]]:
    """Things to stop after the test (Envoys and servers), pass or fail."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, EnvoyProcess):
            await asyncio.to_thread(thing.stop)
        elif isinstance(thing, XdsServer):
            await thing.stop(0)


async def until(predicate: Callable[[], T | None], what: str, timeout: float = 15) -> T:
    return await asyncio.to_thread(
        wait_until, predicate, timeout, 0.05, what, (OSError, ValueError)
    )


async def serve(cp: ControlPlane, started: list[Any]) -> int:
    port = await cp.server.start("127.0.0.1", 0)
    started.append(cp.server)
    return port


async def envoy(
    workdir: Path,
    name: str,
    xds_port: int,
    started: list[Any],
    *,
    ads: AdsMode = "sotw",
    cluster: str = "sentinel-xds-sidecar",
    listen: dict[str, Address] | None = None,
) -> EnvoyProcess:
    admin = free_port()
    text = bootstrap_yaml(
        name,
        [Address("127.0.0.1", xds_port)],
        node_cluster=cluster,
        admin=Address("127.0.0.1", admin),
        ads=ads,
        listen=listen,
    )
    proc = await asyncio.to_thread(EnvoyProcess.start, workdir, text, admin, name=name)
    started.append(proc)
    return proc


def synced(sc: Sidecar | None, *types: str) -> bool:
    return sc is not None and all(
        t in sc.types and sc.types[t].state() is SyncState.SYNCED for t in types
    )


async def test_delta_sidecar_follows_primary_change(tmp_path: Path, started: list[Any]) -> None:
    """An Envoy bootstrapped with ``--ads delta`` gets its listener and cluster over Delta ADS,
    follows a primary change, rejects nothing, and is tracked as a SYNCED delta sidecar."""
    listen = Address("127.0.0.1", free_port())
    cp = ControlPlane(config({"mymaster": {"listen": str(listen)}}))
    cp.publish([GroupSpec("mymaster", listen, A)])
    port = await serve(cp, started)
    proxy = await envoy(tmp_path, "delta-1", port, started, ads="delta")
    await until(lambda: proxy.listener_ready(listen.port), "listener on the group port")
    await until(lambda: proxy.cluster_hosts("redis/mymaster") == [A], "cluster on A")
    cp.publish([GroupSpec("mymaster", listen, B)])
    await until(lambda: proxy.cluster_hosts("redis/mymaster") == [B], "cluster on B")
    await until(
        lambda: synced(cp.sidecar("delta-1"), CLUSTER, ENDPOINT, LISTENER), "all types ACKed"
    )
    sc = cp.sidecar("delta-1")
    assert sc is not None and sc.protocol == "delta" and sc.envoy_version.startswith("envoy/")
    stats = proxy.stats()
    assert stats.get("cluster_manager.cds.update_rejected", 0) == 0
    assert stats.get("listener_manager.lds.update_rejected", 0) == 0
    assert proxy.listener_ready(listen.port)


@pytest.mark.parametrize("ads", ["sotw", "delta"])
async def test_nacked_listener_is_not_resent_and_last_good_config_kept(
    tmp_path: Path, started: list[Any], ads: AdsMode
) -> None:
    """Envoy NACKs a Listener it cannot bind (port taken). The control plane records the NACK
    (state NACKED, Envoy's error text), never re-sends that version, Envoy keeps serving its
    last good listener, and the next topology change is sent and ACKed."""
    good = Address("127.0.0.1", free_port())
    cp = ControlPlane(config({"mymaster": {"listen": str(good)}}))
    cp.publish([GroupSpec("mymaster", good, A)])
    port = await serve(cp, started)
    proxy = await envoy(tmp_path, f"nack-{ads}", port, started, ads=ads)
    await until(lambda: proxy.listener_ready(good.port), "first listener")
    await until(lambda: synced(cp.sidecar(f"nack-{ads}"), LISTENER), "first LDS ACK")

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = Address("127.0.0.1", squatter.getsockname()[1])
        cp.publish([GroupSpec("mymaster", taken, A)])
        sc = cp.sidecar(f"nack-{ads}")
        assert sc is not None
        lds = sc.types[LISTENER]
        await until(lambda: lds.state() is SyncState.NACKED, "LDS NACK")
        assert str(taken.port) in lds.nack_detail
        assert sidecar_state(sc, {}).types["Listener"].state is SyncState.NACKED  # as /status shows
        assert proxy.listener_ready(good.port), "Envoy dropped its last good listener"

        fresh = Address("127.0.0.1", free_port())
        cp.publish([GroupSpec("mymaster", fresh, B)])
        await until(lambda: proxy.listener_ready(fresh.port), "listener after the next change")
        await until(lambda: synced(sc, LISTENER, CLUSTER), "LDS and CDS ACKed after the NACK")
    await until(lambda: proxy.cluster_hosts("redis/mymaster") == [B], "cluster on B")
    assert lds.nacks == 1
    assert proxy.stats().get("listener_manager.lds.update_rejected") == 1


async def test_two_sidecars_on_one_host_get_their_own_listeners_and_groups(
    tmp_path: Path, started: list[Any]
) -> None:
    """``--listen`` puts each sidecar's listener where its bootstrap says; a group restricted
    to a node cluster reaches only sidecars of that cluster."""
    config_listen = Address("127.0.0.1", free_port())
    private = Address("127.0.0.1", free_port())
    cp = ControlPlane(
        config(
            {
                "mymaster": {"listen": str(config_listen)},
                "cache": {"listen": str(private), "sidecars": {"clusters": ["registry"]}},
            }
        )
    )
    cp.publish([GroupSpec("mymaster", config_listen, A), GroupSpec("cache", private, B)])
    port = await serve(cp, started)
    port_a, port_b = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
    one = await envoy(
        tmp_path, "registry-1", port, started, cluster="registry", listen={"mymaster": port_a}
    )
    two = await envoy(tmp_path, "web-1", port, started, cluster="web", listen={"mymaster": port_b})
    await until(lambda: one.listener_ready(port_a.port), "registry-1 on its own port")
    await until(lambda: two.listener_ready(port_b.port), "web-1 on its own port")
    await until(lambda: one.listener_ready(private.port), "registry-1 gets the restricted group")
    await until(lambda: synced(cp.sidecar("web-1"), LISTENER, CLUSTER), "web-1 ACKed")
    listeners_two = {name: addr.port for name, addr in two.listeners()}
    assert listeners_two == {"redis/mymaster": port_b.port}
    assert two.cluster_hosts("redis/cache") == []
    assert one.cluster_hosts("redis/cache") == [B]
    assert config_listen.port not in {addr.port for _, addr in one.listeners()}
