"""The service wires per-node profiles into what it serves (scripted Sentinels, real gRPC).

A sidecar whose bootstrap carries ``--listen`` gets its Listener there; a group
restricted to a node cluster reaches only sidecars of that cluster; a plain
sidecar gets the config's listeners. This is the path a docker-registry host
with two sidecars depends on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.google.protobuf import Struct

from redis_sentinel_watch import Address, FakeSentinelIO
from tests.adsclient import AdsClient
from tests.support import wait_for
from xds.ads.snapshot import CLUSTER, LISTENER
from xds.lab import free_port
from xds.service.app import Service
from xds.service.config import parse_config

SENTINEL = Address("127.0.0.1", 26999)
PRIMARY = Address("127.0.0.1", 7301)
PRIMARY_2 = Address("127.0.0.1", 7302)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    config = parse_config(
        {
            "sentinels": [str(SENTINEL)],
            "groups": {
                "shared": {"listen": "127.0.0.1:6390"},
                "private": {"listen": "127.0.0.1:6391", "sidecars": {"clusters": ["registry"]}},
            },
            "xds": {"listen": f"127.0.0.1:{free_port()}"},
            "admin": {"listen": f"127.0.0.1:{free_port()}"},
            "watch": {"poll_interval_s": 0.05},
        }
    )
    io = FakeSentinelIO()
    io.say(SENTINEL, "shared", PRIMARY, epoch=1)
    io.say(SENTINEL, "private", PRIMARY_2, epoch=1)
    io.set_role(PRIMARY, "master")
    io.set_role(PRIMARY_2, "master")
    svc = Service(config, io=io)
    await svc.startup()
    try:
        await wait_for(lambda: svc.cache.current() is not None, 10, "first snapshot")
        yield svc
    finally:
        await svc.shutdown(0)


async def listeners_of(port: int, node: Node) -> dict[str, int]:
    client = AdsClient(f"127.0.0.1:{port}")
    try:
        await client.call.write(DiscoveryRequest(type_url=LISTENER, node=node))
        resp = await client.recv()
        return {
            lst.name: lst.address.socket_address.port_value
            for lst in (r.unpack() for r in resp.resources)
        }
    finally:
        await client.close()


async def test_listen_override_and_group_restriction(service: Service) -> None:
    """--listen metadata moves this sidecar's listener; the restricted group goes only to
    the registry cluster; a plain sidecar gets the config's ports."""
    port = service.xds.port
    meta = Struct.from_dict({"sentinel_xds": {"listen": {"shared": "127.0.0.1:16390"}}})
    registry = await listeners_of(port, Node(id="reg-1", cluster="registry", metadata=meta))
    assert registry == {"redis/private": 6391, "redis/shared": 16390}
    web = await listeners_of(port, Node(id="web-1", cluster="web"))
    assert web == {"redis/shared": 6390}


async def test_status_shows_each_sidecar_against_its_own_profile(service: Service) -> None:
    """A sidecar that ACKed its own profile's versions is SYNCED in /status, even though
    they differ from the plain profile's."""
    client = AdsClient(f"127.0.0.1:{service.xds.port}")
    try:
        await client.call.write(
            DiscoveryRequest(type_url=CLUSTER, node=Node(id="web-1", cluster="web"))
        )
        resp = await client.recv()
        await client.ack(resp)
        await wait_for(
            lambda: any(s.synced("Cluster") for s in service.status().sidecars),
            5,
            "web sidecar SYNCED in status",
        )
        plain = service.cache.current()
        assert plain is not None and plain.version(CLUSTER) != resp.version_info
    finally:
        await client.close()
