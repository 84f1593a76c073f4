"""Capture the first DiscoveryRequest a real Envoy sends, as raw protobuf bytes.

The benchmarks and the parser test need what a real sidecar sends on connect
(Envoy lists every compiled-in extension in its Node, ~60 KB), not a
hand-made small Node that would flatter the parser. Run once per Envoy
upgrade::

    .venv/bin/python -m bench.xds_capture_node [OUT]

It starts a throw-away ADS endpoint that records the first request and
closes, and a real Envoy bootstrapped against it (SotW and Delta both start
with the same Node).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from redis_sentinel_watch import Address
from xds.lab import EnvoyProcess, free_port
from xds.resources.bootstrap import bootstrap_yaml

DEFAULT_OUT = Path(__file__).parent / "fixtures" / "envoy-first-request.bin"


def _identity(data: bytes) -> bytes:
    return data


async def capture() -> bytes:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def ads(requests: AsyncIterator[bytes], _: grpc.aio.ServicerContext[Any, Any]) -> None:
        async for raw in requests:
            if not got.done():
                got.set_result(raw)
            return

    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(
        ads, request_deserializer=_identity, response_serializer=_identity
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService",
                {"StreamAggregatedResources": handler},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    admin = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        envoy = EnvoyProcess.start(
            Path(tmp),
            bootstrap_yaml(
                "captured-sidecar",
                [Address("127.0.0.1", port)],
                admin=Address("127.0.0.1", admin),
            ),
            admin,
            name="capture",
        )
        try:
            raw = await asyncio.wait_for(got, 30)
        finally:
            envoy.stop()
            await server.stop(0)
    return raw


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    raw = asyncio.run(capture())
    out.write_bytes(raw)
    print(f"wrote {len(raw)} bytes to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
