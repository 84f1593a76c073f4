"""What both ADS variants share: one task per stream reacting to requests, pushes and shutdown.

A stream waits on three things at once: the next request from the sidecar,
the cache's "something changed" future, and the server closing. All three
arrive in one inbox queue, so each event costs one ``await`` (no
``asyncio.wait`` or task per request: with a thousand streams that overhead
is most of a push). Requests are read by a separate task because grpcio aio
cancels the whole RPC when a pending ``read()`` is cancelled.

The node is taken from the first request only (Envoy sets
``set_node_on_first_message_only``; later requests carry none, and one that
does cannot change who the stream is). It decides the stream's profile, and so
which snapshot it is served, for the stream's whole life. It is decoded once
(:class:`xds.ads.node.NodeDecoder`, within limits); a later request's Node is
only checked against ``xds.max_node_bytes``, never decoded, so re-sending a
huge Node costs the server a length check.

A stream that sends no request within ``xds.first_request_timeout_s`` is
closed with DEADLINE_EXCEEDED, so idle streams cannot hold the server's slots
(:mod:`xds.ads.limits`).

The stream keeps its own reference to the snapshot it is serving and moves it
forward only when it handles a change, so that a request arriving in the
middle of a change is answered from the same snapshot the change is pushing
(make-before-break order holds even then).

Hostile or broken clients (``tests/component/test_fuzz_requests.py``) get a
gRPC status, never a crash or a silently "OK" end: bytes that do not parse
and protocol violations (a non-``type.googleapis.com/`` type URL, more than
:data:`MAX_RESOURCE_NAMES` names, more than :data:`MAX_TYPES` resource types)
end the stream with INVALID_ARGUMENT; a bug of ours ends it with INTERNAL and
a logged traceback. With a rate (``xds.max_requests_per_second``) requests
beyond it are delayed, not dropped (:mod:`xds.ads.ratelimit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any, Generic, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError

from xds.ads.cache import SnapshotCache
from xds.ads.discovery_request import DeltaRequest, NodeInfo, SotwRequest
from xds.ads.limits import Refusals, StreamLimits
from xds.ads.node import NodeLimitError, describe_node
from xds.ads.ratelimit import TokenBucket
from xds.ads.sidecars import Sidecar, Sidecars, TypeState
from xds.ads.snapshot import Snapshot
from xds.ads.typeurls import TYPE_PREFIX, short_type

__all__ = ["TYPE_PREFIX", "AdsStream", "ProtocolError"]

log = structlog.get_logger("xds.stream")

MAX_RESOURCE_NAMES = 10_000
#: distinct type URLs one stream may ask for (we serve three; Envoy may ask for a few more)
MAX_TYPES = 32
#: per stream, at most one ``xds.stream.rate_limited`` line per this many seconds
RATE_LIMITED_LOG_INTERVAL_S = 10.0

R = TypeVar("R", SotwRequest, DeltaRequest)


class ProtocolError(Exception):
    """The peer broke the protocol; the stream ends with INVALID_ARGUMENT."""


class NodeRejected(ProtocolError):
    """The Node is over a limit (size, metadata); counted as a refusal, logged rate-limited."""


class _Closing(Exception):
    """The server is shutting down; the stream ends with UNAVAILABLE."""


class _Silent(Exception):
    """No first request within the deadline; the stream ends with DEADLINE_EXCEEDED."""


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Malformed:
    """The request stream broke: bytes that are not a request (or the read failed)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


#: requests read from a stream but not yet handled; past this the reader waits
MAX_QUEUED_REQUESTS = 16
_CHANGED, _CLOSE, _EOF = _Signal("CHANGED"), _Signal("CLOSE"), _Signal("EOF")
_SILENT = _Signal("FIRST_REQUEST_TIMEOUT")


def check_type_url(type_url: str, names: int) -> None:
    if not type_url.startswith(TYPE_PREFIX):
        raise ProtocolError(f"type_url {type_url!r} is not a type.googleapis.com/ URL")
    if names > MAX_RESOURCE_NAMES:
        raise ProtocolError(f"{names} resource names for {type_url} (limit {MAX_RESOURCE_NAMES})")


class AdsStream(Generic[R]):
    """Serves one ADS stream. Subclasses implement the variant's rules; ``await run()``."""

    protocol = ""

    def __init__(
        self,
        cache: SnapshotCache,
        sidecars: Sidecars,
        requests: AsyncIterator[R],
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        limits: StreamLimits | None = None,
    ) -> None:
        self._limits = limits if limits is not None else StreamLimits(Refusals(sidecars.observer))
        max_requests_per_second = self._limits.max_requests_per_second
        self._cache = cache
        self._requests: AsyncIterator[R] = requests
        self._context = context
        self._inbox: asyncio.Queue[R | _Signal | _Malformed] = asyncio.Queue()
        # Requests waiting in the inbox are bounded: when a sidecar stops reading our
        # responses, we stop reading its requests and gRPC flow control pushes back,
        # instead of queueing them without limit. Signals do not count.
        self._room = asyncio.Semaphore(MAX_QUEUED_REQUESTS)
        self._bucket = (
            TokenBucket(max_requests_per_second) if max_requests_per_second is not None else None
        )
        self._limited = 0  # requests delayed since the last rate_limited log line
        self._limited_logged_at: float | None = None
        self._sidecars = sidecars
        self._nonce = 0
        self._started = False
        self.profile: Hashable = None
        self.snapshot: Snapshot | None = None
        self.sidecar: Sidecar = sidecars.open(context.peer(), self.protocol)
        self.log = log.bind(stream=self.sidecar.stream_id, protocol=self.protocol)

    # ------------------------------------------------------------------ subclass hooks

    async def on_request(self, request: R) -> None:
        raise NotImplementedError

    async def on_change(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared

    def check_request(self, type_url: str, names: int) -> None:
        """Raise :class:`ProtocolError` for a request this stream must not accept."""
        check_type_url(type_url, names)
        if type_url not in self.sidecar.types and len(self.sidecar.types) >= MAX_TYPES:
            raise ProtocolError(f"more than {MAX_TYPES} resource types on one stream")

    def record_ack(self, type_url: str, ts: TypeState, version: str, *, fresh: bool) -> None:
        """The sidecar accepted ``version``; ``fresh`` when it is the one we last sent
        (only then is there a push-to-ACK latency to count and log)."""
        now = time.monotonic()
        ts.acked_version = version
        ts.acked_at = now
        latency = now - ts.sent_at if fresh and ts.sent_at is not None else None
        self._sidecars.observer.acked(type_url, latency)
        if latency is not None:
            self.log.debug(
                "xds.ack", type=short_type(type_url), version=version, ms=round(latency * 1000, 1)
            )
        self._sidecars.notify()

    def record_nack(
        self, type_url: str, ts: TypeState, version: str, error: str, **details: Any
    ) -> None:
        """The sidecar rejected ``version``: remember it (never resent), count it, and
        log it once per rejected version, with Envoy's reason."""
        first_time = ts.nacked_version != version
        ts.nacked_version = version
        ts.nack_detail = error
        ts.nacks += 1
        self._sidecars.observer.nacked(type_url)
        if first_time:
            self.log.warning(
                "xds.nack", type=short_type(type_url), version=version, error=error, **details
            )
        self._sidecars.notify()

    def next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    async def send(self, data: bytes) -> None:
        await self._context.write(data)

    def close(self) -> None:
        """End the stream with UNAVAILABLE (server shutdown); safe to call at any time."""
        self._inbox.put_nowait(_CLOSE)

    def _on_changed(self, _: asyncio.Future[None]) -> None:
        self._inbox.put_nowait(_CHANGED)

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        timeout = self._limits.first_request_timeout_s
        deadline = (
            asyncio.get_running_loop().call_later(timeout, self._inbox.put_nowait, _SILENT)
            if timeout is not None
            else None
        )
        try:
            await self._serve()
        except NodeRejected as exc:
            self._limits.refusals.refuse("node_limits", self.sidecar.peer, error=str(exc))
            await self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except _Silent:
            self._limits.refusals.refuse(
                "first_request_timeout", self.sidecar.peer, first_request_timeout_s=timeout
            )
            await self._context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no request within {timeout:g}s of opening the stream "
                "(xds.first_request_timeout_s); closing it to free its slot",
            )
        except ProtocolError as exc:
            self.log.warning("xds.stream.rejected", node=self.sidecar.node_id, error=str(exc))
            await self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except _Closing:
            await self._context.abort(
                grpc.StatusCode.UNAVAILABLE, "control plane shutting down; reconnect"
            )
        except Exception:
            # a bug of ours: say so (once, with the traceback) and end this stream only
            self.log.exception("xds.stream.failed", node=self.sidecar.node_id)
            await self._context.abort(grpc.StatusCode.INTERNAL, "control plane error")
        finally:
            if deadline is not None:
                deadline.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._sidecars.close(self.sidecar)
            self.log.info("xds.stream.closed", node=self.sidecar.node_id)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for request in self._requests:
                if request.node is not None:  # cheap; a big Node ends the stream unread
                    try:
                        self._limits.nodes.check_size(request.node)
                    except NodeLimitError as exc:
                        self._inbox.put_nowait(_Malformed(NodeRejected(str(exc))))
                        return
                if self._bucket is not None:
                    wait = self._bucket.take(loop.time())
                    if wait > 0:
                        self._rate_limited(loop.time(), wait)
                        await asyncio.sleep(wait)
                await self._room.acquire()
                self._inbox.put_nowait(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. DecodeError: bytes that are not a request
            self._inbox.put_nowait(_Malformed(exc))
        finally:
            self._inbox.put_nowait(_EOF)

    def _rate_limited(self, now: float, wait: float) -> None:
        """Count a delayed request; log the first one and then at most every 10 s."""
        self._limited += 1
        self._sidecars.observer.rate_limited()
        last = self._limited_logged_at
        if last is None or now - last >= RATE_LIMITED_LOG_INTERVAL_S:
            self._limited_logged_at = now
            assert self._bucket is not None
            self.log.warning(
                "xds.stream.rate_limited",
                node=self.sidecar.node_id,
                peer=self.sidecar.peer,
                delayed=self._limited,
                wait_ms=round(wait * 1000, 1),
                max_requests_per_second=self._bucket.rate,
                hint="a sidecar sending this fast is broken or hostile; "
                "raise xds.max_requests_per_second only if it is neither",
            )
            self._limited = 0

    async def _serve(self) -> None:
        """One inbox for requests, changes and shutdown: one await per event, no task churn."""
        changed = self._cache.changed()
        changed.add_done_callback(self._on_changed)
        try:
            while True:
                item = await self._inbox.get()
                if item is _CLOSE:
                    raise _Closing
                if item is _EOF:
                    return
                if isinstance(item, _Malformed):
                    if isinstance(item.error, ProtocolError):
                        raise item.error
                    raise ProtocolError(f"malformed request: {item.error}")
                if item is _SILENT:
                    if not self._started:
                        raise _Silent
                    continue
                if item is _CHANGED:
                    changed = self._cache.changed()
                    changed.add_done_callback(self._on_changed)
                    if self._started:
                        self.snapshot = self._cache.current(self.profile)
                        if self.snapshot is not None:
                            await self.on_change()
                    continue
                assert isinstance(item, SotwRequest | DeltaRequest)
                self._room.release()
                if not self._started:
                    self._start(item.node)
                await self.on_request(item)
        finally:
            changed.remove_done_callback(self._on_changed)

    def _start(self, raw: bytes | None) -> None:
        self._started = True
        node: NodeInfo | None = None
        if raw is not None:
            try:
                node = self._limits.nodes.decode(raw)
            except NodeLimitError as exc:
                raise NodeRejected(str(exc)) from None
            except DecodeError as exc:
                raise ProtocolError(f"malformed node: {exc}") from None
            describe_node(self.sidecar, node)
        self.profile = self._cache.profile_of(node)
        self.sidecar.profile = self.profile
        self.snapshot = self._cache.current(self.profile)
        self.log = self.log.bind(node=self.sidecar.node_id)
        self.log.info(
            "xds.stream.opened",
            peer=self.sidecar.peer,
            cluster=self.sidecar.cluster,
            agent=self.sidecar.envoy_version,
        )
