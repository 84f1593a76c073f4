"""The gRPC listener: registers the ADS methods on a grpcio asyncio server.

Responses are pre-framed bytes (see :mod:`xds.wire`), so the response
serializer is the identity; requests are parsed with envoy-data-plane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from redis_sentinel_watch import Address

from .cache import SnapshotCache
from .sidecars import Sidecars
from .sotw import SotwStream

__all__ = ["ADS_SERVICE", "XdsServer"]

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    """ADS over gRPC, serving whatever the cache holds."""

    def __init__(self, cache: SnapshotCache, sidecars: Sidecars) -> None:
        self.cache = cache
        self.sidecars = sidecars
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def _sotw(
        self,
        requests: AsyncIterator[DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await SotwStream(self.cache, self.sidecars, requests, context).run()

    async def start(self, listen: Address) -> int:
        """Bind and start serving; returns the bound port (useful with port 0)."""
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ]
        )
        handlers = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw,
                request_deserializer=DiscoveryRequest.FromString,
                response_serializer=_identity,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),)
        )
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        self.port = server.add_insecure_port(f"{host}:{listen.port}")
        if self.port == 0:
            raise OSError(f"cannot bind xDS listener on {listen}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace: float) -> None:
        """Stop accepting, give open streams ``grace`` seconds, then cancel them.

        Sidecars see their stream end and reconnect (to another replica if the
        bootstrap lists one); they keep their last config meanwhile.
        """
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
