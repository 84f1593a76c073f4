"""Interop: gRPC's own xDS client (grpcio, ``xds:///`` target) accepts what we serve.

gRPC resolves ``xds:///mymaster`` by asking for the Listener ``mymaster`` (an
API listener with an inline route), then the Cluster and its
ClusterLoadAssignment, the same Cluster and endpoints Envoy sidecars get. The
test runs the client in its own process (as an application would), puts a real
gRPC server where the ClusterLoadAssignment points, and checks both ends: the
client's RPC reaches that server through the xDS-resolved endpoint, and every
type it requested is ACKed, none NACKed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from redis_sentinel_watch import Address
from tests.support import wait_for
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars, SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.resources.profiles import Profiles
from xds.resources.redis_group import GroupSpec
from xds.service.config import parse_config

pytestmark = pytest.mark.integration

CLIENT = """
import sys, grpc
channel = grpc.insecure_channel("xds:///mymaster")
reply = channel.unary_unary("/test.Echo/Say")(b"ping", timeout=20)
print(reply.decode(), flush=True)
sys.stdin.readline()  # stay connected until the test has looked at the server side
"""


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    """A plain gRPC server answering /test.Echo/Say, standing where EDS points."""

    async def say(request: bytes, _: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return b"pong:" + request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Say": grpc.unary_unary_rpc_method_handler(
                        say, request_deserializer=None, response_serializer=None
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(0)


async def test_grpc_xds_client_acks_everything_and_reaches_endpoint(
    tmp_path: Path, backend: int
) -> None:
    """grpcio's xDS client ACKs LDS, CDS and EDS and its RPC reaches the EDS endpoint."""
    cfg = parse_config(
        {
            "sentinels": ["127.0.0.1:26379"],
            "groups": {"mymaster": {"listen": "127.0.0.1:6390"}},
            "xds": {"listen": "127.0.0.1:1"},
        }
    )
    profiles = Profiles(cfg.groups)
    cache = SnapshotCache(profiles.of)
    specs = [GroupSpec("mymaster", Address("127.0.0.1", 6390), Address("127.0.0.1", backend))]
    cache.publish(tuple(specs), lambda p: profiles.snapshot(p, specs))  # type: ignore[arg-type]
    server = XdsServer(cache, Sidecars())
    port = await server.start("127.0.0.1", 0)
    bootstrap = tmp_path / "grpc-bootstrap.json"
    bootstrap.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {
                        "server_uri": f"127.0.0.1:{port}",
                        "channel_creds": [{"type": "insecure"}],
                        "server_features": ["xds_v3"],
                    }
                ],
                "node": {"id": "grpc-app-1", "cluster": "app", "locality": {"zone": "z"}},
            }
        )
    )
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            err = await proc.stderr.read()
            raise AssertionError(f"gRPC client failed: {err.decode()[-2000:]}")
        assert line.decode().strip() == "pong:ping"
        (sc,) = server.sidecars.all()
        assert sc.node_id == "grpc-app-1" and sc.envoy_version.lower().startswith("grpc")

        def all_acked() -> bool:
            return all(
                t in sc.types and sc.types[t].state() is SyncState.SYNCED
                for t in (LISTENER, CLUSTER, ENDPOINT)
            )

        await wait_for(all_acked, 10, "gRPC client ACKed LDS, CDS and EDS")
        assert all(ts.nacks == 0 for ts in sc.types.values())
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await server.stop(0)
