"""The gRPC listener: both ADS methods on a grpcio asyncio server.

Responses are pre-framed bytes (see :mod:`xds.ads.wire`), so the response
serializer is the identity; requests are parsed by :mod:`xds.ads.discovery_request` with
the protobuf runtime (an Envoy's first request carries a ~60 KB Node).

Four operational limits live here:

* keepalive: the server pings idle connections and accepts the clients'
  pings, so a sidecar behind a dead NAT entry or a frozen peer is noticed;
* ``max_streams``: beyond it a new stream is refused at once with
  RESOURCE_EXHAUSTED (logged, ``xds.stream.refused``, and counted,
  ``sentinel_xds_streams_refused_total``), so an overloaded replica pushes
  sidecars to another replica instead of serving all of them slowly;
* ``max_requests_per_second`` per stream: requests beyond it are delayed
  (``xds.stream.rate_limited``, ``sentinel_xds_rate_limited_requests_total``),
  so one flooding client cannot starve the others;
* :meth:`XdsServer.stop` ends every open stream with UNAVAILABLE right away
  (sidecars keep their config and reconnect, to another replica if their
  bootstrap lists one), then stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from xds.ads.cache import SnapshotCache
from xds.ads.delta import DeltaStream
from xds.ads.discovery_request import DeltaRequest, SotwRequest, parse_delta, parse_sotw
from xds.ads.sidecars import Sidecars
from xds.ads.sotw import SotwStream
from xds.ads.stream import AdsStream

__all__ = ["ADS_SERVICE", "DEFAULT_MAX_STREAMS", "XdsServer"]

log = structlog.get_logger("xds.server")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
DEFAULT_MAX_STREAMS = 5000
#: at most one "refused" warning per this many seconds (a storm would flood the log)
REFUSED_LOG_INTERVAL_S = 5.0


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    """ADS (SotW and Delta) over gRPC, serving whatever the cache holds."""

    def __init__(
        self,
        cache: SnapshotCache,
        sidecars: Sidecars,
        max_streams: int = DEFAULT_MAX_STREAMS,
        *,
        max_requests_per_second: float | None = None,
    ) -> None:
        self.cache = cache
        self.sidecars = sidecars
        self.max_streams = max_streams
        self.max_requests_per_second = max_requests_per_second
        self.refused = 0
        self._open = 0
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_S
        self._closing = False
        self._streams: set[AdsStream[Any]] = set()
        self._idle = asyncio.Event()  # set while no stream is open
        self._idle.set()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane shutting down")
        if self._open >= self.max_streams:
            self.refused += 1
            self.sidecars.observer.stream_refused()
            now = asyncio.get_running_loop().time()
            if now - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
                self._refused_logged_at = now
                log.warning(
                    "xds.stream.refused",
                    peer=context.peer(),
                    open_streams=self._open,
                    max_streams=self.max_streams,
                    refused_total=self.refused,
                    hint="raise xds.max_streams or add a control-plane replica",
                )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"stream limit reached ({self.max_streams}); try another control plane",
            )

    async def _sotw(
        self, requests: AsyncIterator[SotwRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await self._admit(context)
        await self._run(
            SotwStream(
                self.cache,
                self.sidecars,
                requests,
                context,
                max_requests_per_second=self.max_requests_per_second,
            )
        )

    async def _delta(
        self, requests: AsyncIterator[DeltaRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await self._admit(context)
        await self._run(
            DeltaStream(
                self.cache,
                self.sidecars,
                requests,
                context,
                max_requests_per_second=self.max_requests_per_second,
            )
        )

    async def _run(self, stream: AdsStream[Any]) -> None:
        self._open += 1
        self._idle.clear()
        self._streams.add(stream)
        try:
            await stream.run()
        finally:
            self._streams.discard(stream)
            self._open -= 1
            if self._open == 0:
                self._idle.set()

    @property
    def open_streams(self) -> int:
        return self._open

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no stream is open; False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def start(
        self, host: str, port: int, credentials: grpc.ServerCredentials | None = None
    ) -> int:
        """Bind and start serving; returns the bound port (useful with port 0).

        With ``credentials`` (see :mod:`xds.service.tls`) the port speaks only TLS: a
        client that fails the handshake (no certificate, or one the client CA
        did not sign, under mutual TLS) never reaches a stream.
        """
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_ping_strikes", 0),
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),  # Envoy's first: ~60 KB
            ]
        )
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw, request_deserializer=parse_sotw, response_serializer=_identity
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta, request_deserializer=parse_delta, response_serializer=_identity
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ADS_SERVICE, handlers),)
        )
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            self.port = server.add_insecure_port(target)
        else:
            self.port = server.add_secure_port(target, credentials)
        if self.port == 0:
            raise OSError(f"cannot bind xDS listener on {target}")
        await server.start()
        self._server = server
        return self.port

    async def stop(self, grace: float) -> None:
        """End every stream with UNAVAILABLE now, then stop the server within ``grace`` s.

        Sidecars see their stream end and reconnect (to another replica if the
        bootstrap lists one); they keep their last config meanwhile.
        """
        if self._server is None:
            return
        self._closing = True
        for stream in list(self._streams):
            stream.close()
        log.info("xds.server.stopping", open_streams=self._open)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        await self._server.stop(max(0.0, deadline - loop.time()))
        self._server = None
