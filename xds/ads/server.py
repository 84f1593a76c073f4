"""The gRPC listener: both ADS methods on a grpcio asyncio server.

Responses are pre-framed bytes (see :mod:`xds.ads.wire`), so the response
serializer is the identity; requests are parsed by :mod:`xds.ads.discovery_request` with
the protobuf runtime (an Envoy's first request carries a ~60 KB Node).

Six operational limits live here:

* keepalive: the server pings idle connections and accepts the clients'
  pings, so a sidecar behind a dead NAT entry or a frozen peer is noticed;
* ``max_streams``: beyond it a new stream is refused at once with
  RESOURCE_EXHAUSTED (logged, ``xds.stream.refused``, and counted,
  ``sentinel_xds_streams_refused_total{reason="max_streams"}``), so an
  overloaded replica pushes sidecars to another replica instead of serving
  all of them slowly;
* ``max_streams_per_peer``, ``first_request_timeout_s`` and ``max_node_bytes``:
  one address cannot take every slot, nor hold one without speaking, nor make
  the server decode a huge Node (:mod:`xds.ads.limits`, :mod:`xds.ads.node`);
* request size: grpc aio parses each request on the event loop, so a request
  over ``max_node_bytes`` + :data:`MESSAGE_SLACK_BYTES` (a Node plus room for
  thousands of names) is refused before it is parsed, and one naming more than
  ``MAX_RESOURCE_NAMES`` resources before a Python value is built for them.
  Up to twice that size the refusal is ours (INVALID_ARGUMENT naming
  ``xds.max_node_bytes``, counted and logged as ``node_limits``); beyond it
  grpc refuses the message itself (``grpc.max_receive_message_length``, which
  bounds the memory a request takes): the client gets RESOURCE_EXHAUSTED
  "Received message larger than max", and we see only a stream ending as if
  its client had hung up, neither counted nor logged as a refusal;
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
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import structlog

from xds.ads.cache import SnapshotCache
from xds.ads.delta import DeltaStream
from xds.ads.discovery_request import (
    DeltaRequest,
    RequestLimitError,
    SotwRequest,
    parse_delta,
    parse_sotw,
)
from xds.ads.limits import (
    DEFAULT_FIRST_REQUEST_TIMEOUT_S,
    DEFAULT_MAX_STREAMS_PER_PEER,
    Refusals,
    StreamLimits,
    peer_host,
)
from xds.ads.node import DEFAULT_MAX_NODE_BYTES, NodeDecoder
from xds.ads.sidecars import Sidecars
from xds.ads.sotw import SotwStream
from xds.ads.stream import MAX_RESOURCE_NAMES, AdsStream, NodeRejected, ProtocolError

__all__ = ["ADS_SERVICE", "DEFAULT_MAX_STREAMS", "MESSAGE_SLACK_BYTES", "XdsServer"]

log = structlog.get_logger("xds.server")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
DEFAULT_MAX_STREAMS = 5000
#: what a request may hold beyond its Node (names, nonces, type URL, error detail):
#: a sidecar names a handful of resources; 256 KiB still holds ~7,000 names. Every
#: byte of it is parsed on the event loop, so it is kept small (a hostile client
#: reconnecting with requests at the cap must not stall the failover path).
MESSAGE_SLACK_BYTES = 256 * 1024


def _identity(data: bytes) -> bytes:
    return data


R = TypeVar("R", SotwRequest, DeltaRequest)


def _bounded(parse: Callable[..., R], max_bytes: int) -> Callable[[bytes], R]:
    """A request deserializer that refuses, before building anything, a request over
    ``max_bytes`` (:class:`NodeRejected`: counted, logged rate-limited) or naming more
    than ``MAX_RESOURCE_NAMES`` resources (:class:`ProtocolError`)."""

    def deserialize(raw: bytes) -> R:
        if len(raw) > max_bytes:
            raise NodeRejected(
                f"request is {len(raw)} bytes, over {max_bytes} "
                f"(xds.max_node_bytes + {MESSAGE_SLACK_BYTES} for the rest of a request)"
            )
        try:
            return parse(raw, max_names=MAX_RESOURCE_NAMES)
        except RequestLimitError as exc:
            raise ProtocolError(str(exc)) from None

    return deserialize


class XdsServer:
    """ADS (SotW and Delta) over gRPC, serving whatever the cache holds."""

    def __init__(
        self,
        cache: SnapshotCache,
        sidecars: Sidecars,
        max_streams: int = DEFAULT_MAX_STREAMS,
        *,
        max_requests_per_second: float | None = None,
        max_streams_per_peer: int | None = DEFAULT_MAX_STREAMS_PER_PEER,
        first_request_timeout_s: float | None = DEFAULT_FIRST_REQUEST_TIMEOUT_S,
        max_node_bytes: int = DEFAULT_MAX_NODE_BYTES,
    ) -> None:
        self.cache = cache
        self.sidecars = sidecars
        self.max_streams = max_streams
        self.max_streams_per_peer = max_streams_per_peer
        #: requests over this are refused unparsed (see the module docstring)
        self.max_request_bytes = max_node_bytes + MESSAGE_SLACK_BYTES
        self.limits = StreamLimits(
            Refusals(sidecars.observer),
            NodeDecoder(max_node_bytes),
            first_request_timeout_s=first_request_timeout_s,
            max_requests_per_second=max_requests_per_second,
        )
        self._open = 0
        self._per_peer: dict[str, int] = {}
        self._closing = False
        self._streams: set[AdsStream[Any]] = set()
        self._idle = asyncio.Event()  # set while no stream is open
        self._idle.set()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def refused(self) -> int:
        """Streams refused or closed early so far, for every reason."""
        return self.limits.refusals.total

    @property
    def max_requests_per_second(self) -> float | None:
        return self.limits.max_requests_per_second

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Refuse the new stream if a limit says so; else the peer's address (its budget)."""
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control plane shutting down")
        peer = context.peer()
        host = peer_host(peer)
        if self._open >= self.max_streams:
            self.limits.refusals.refuse(
                "max_streams", peer, open_streams=self._open, max_streams=self.max_streams
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"stream limit reached ({self.max_streams}); try another control plane",
            )
        cap = self.max_streams_per_peer
        if cap is not None and self._per_peer.get(host, 0) >= cap:
            self.limits.refusals.refuse(
                "max_streams_per_peer", peer, open_streams=self._open, max_streams_per_peer=cap
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"per-peer stream limit reached ({cap} streams from {host}, "
                "xds.max_streams_per_peer)",
            )
        return host

    async def _sotw(
        self, requests: AsyncIterator[SotwRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        host = await self._admit(context)
        await self._run(
            host, SotwStream(self.cache, self.sidecars, requests, context, limits=self.limits)
        )

    async def _delta(
        self, requests: AsyncIterator[DeltaRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        host = await self._admit(context)
        await self._run(
            host, DeltaStream(self.cache, self.sidecars, requests, context, limits=self.limits)
        )

    async def _run(self, host: str, stream: AdsStream[Any]) -> None:
        self._open += 1
        self._per_peer[host] = self._per_peer.get(host, 0) + 1
        self._idle.clear()
        self._streams.add(stream)
        try:
            await stream.run()
        finally:
            self._streams.discard(stream)
            self._open -= 1
            left = self._per_peer.pop(host) - 1
            if left:
                self._per_peer[host] = left
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
                # beyond twice our own cap grpc refuses unread (uncounted): bounded memory
                ("grpc.max_receive_message_length", 2 * self.max_request_bytes),
            ]
        )
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._sotw,
                request_deserializer=_bounded(parse_sotw, self.max_request_bytes),
                response_serializer=_identity,
            ),
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self._delta,
                request_deserializer=_bounded(parse_delta, self.max_request_bytes),
                response_serializer=_identity,
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
