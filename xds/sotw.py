"""State-of-the-World ADS: one bidirectional stream per sidecar, all types multiplexed.

Protocol rules followed (xDS protocol document, "ACK/NACK and versioning",
"Resource updates", "When to send an update"):

* the node is taken from the first request only (Envoy sets
  ``set_node_on_first_message_only``);
* every response carries a fresh nonce; a request whose ``response_nonce`` is
  not the last nonce we sent *for that type* is stale and ignored, so a
  request racing a newer response can neither ACK nor NACK it;
* a request carrying our last nonce is an ACK, unless ``error_detail`` is set,
  which makes it a NACK; we never resend a version that was NACKed (no NACK
  loop): the sidecar keeps its last good config, and the next different
  version goes out when the topology changes;
* the first request for each type is always answered, even with an empty set,
  so a sidecar never waits on initialisation (go-control-plane #927);
* an ACK with no change gets no response;
* LDS and CDS responses carry the full set; EDS responses carry the names
  requested, and names that do not exist yet are answered when they appear;
* on a change, types go out in make-before-break order: CDS, EDS, then LDS.

Resources come pre-serialized from the snapshot, so per stream we only frame
and send bytes (see :mod:`xds.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest

from .cache import SnapshotCache
from .node import describe_node
from .sidecars import Sidecar, Sidecars, TypeState
from .snapshot import FULL_STATE_TYPES, PUSH_ORDER, Snapshot
from .wire import sotw_body, sotw_response_bytes

__all__ = ["SotwStream"]

log = structlog.get_logger("xds.sotw")

TYPE_PREFIX = "type.googleapis.com/"
MAX_RESOURCE_NAMES = 10_000


class ProtocolError(Exception):
    """The peer broke the protocol; the stream ends with INVALID_ARGUMENT."""


class SotwStream:
    """Serves one SotW ADS stream. Create one per RPC and ``await run()``."""

    def __init__(
        self,
        cache: SnapshotCache,
        sidecars: Sidecars,
        requests: AsyncIterator[DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        self._cache = cache
        self._requests = requests
        self._context = context
        self._nonce = 0
        self.sidecar: Sidecar = sidecars.open(context.peer(), "sotw")
        self._sidecars = sidecars
        self._log = log.bind(stream=self.sidecar.stream_id)

    async def run(self) -> None:
        queue: asyncio.Queue[DiscoveryRequest | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(queue))
        try:
            await self._serve(queue)
        except ProtocolError as exc:
            self._log.warning("xds.stream.rejected", node=self.sidecar.node_id, error=str(exc))
            await self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._sidecars.close(self.sidecar)
            self._log.info("xds.stream.closed", node=self.sidecar.node_id)

    async def _read(self, queue: asyncio.Queue[DiscoveryRequest | None]) -> None:
        try:
            async for request in self._requests:
                queue.put_nowait(request)
        finally:
            queue.put_nowait(None)

    async def _serve(self, queue: asyncio.Queue[DiscoveryRequest | None]) -> None:
        snapshot = self._cache.current()
        changed = self._cache.changed()
        next_request: asyncio.Task[DiscoveryRequest | None] = asyncio.create_task(queue.get())
        try:
            while True:
                await asyncio.wait({next_request, changed}, return_when=asyncio.FIRST_COMPLETED)
                if changed.done():
                    snapshot = self._cache.current()
                    changed = self._cache.changed()
                    if snapshot is not None:
                        for type_url in PUSH_ORDER:
                            await self._maybe_respond(snapshot, type_url, force=False)
                if next_request.done():
                    request = next_request.result()
                    if request is None:
                        return
                    next_request = asyncio.create_task(queue.get())
                    await self._on_request(request, snapshot)
        finally:
            next_request.cancel()

    async def _on_request(self, request: DiscoveryRequest, snapshot: Snapshot | None) -> None:
        type_url = request.type_url
        if not type_url.startswith(TYPE_PREFIX):
            raise ProtocolError(f"type_url {type_url!r} is not a type.googleapis.com/ URL")
        if len(request.resource_names) > MAX_RESOURCE_NAMES:
            raise ProtocolError(
                f"{len(request.resource_names)} resource_names for {type_url} "
                f"(limit {MAX_RESOURCE_NAMES})"
            )
        sidecar = self.sidecar
        if not sidecar.node_id and request.node is not None:
            describe_node(sidecar, request.node)
            self._log = self._log.bind(node=sidecar.node_id)
            self._log.info(
                "xds.stream.opened",
                peer=sidecar.peer,
                cluster=sidecar.cluster,
                envoy=sidecar.envoy_version,
            )
        ts = sidecar.type(type_url)
        first = not ts.requested
        if request.response_nonce:
            if request.response_nonce != ts.sent_nonce:
                self._log.debug(
                    "xds.stale_nonce",
                    type=_short(type_url),
                    nonce=request.response_nonce,
                    latest=ts.sent_nonce,
                )
                return
            self._ack_or_nack(type_url, ts, request)
        names = frozenset(request.resource_names)
        wildcard = type_url in FULL_STATE_TYPES and (not names or "*" in names)
        added = names - ts.subscribed
        ts.requested = True
        ts.subscribed = names
        ts.wildcard = wildcard
        if snapshot is None:
            return  # nothing to serve yet; the first snapshot will be pushed
        await self._maybe_respond(snapshot, type_url, force=first, added=added)

    def _ack_or_nack(self, type_url: str, ts: TypeState, request: DiscoveryRequest) -> None:
        now = time.monotonic()
        detail = request.error_detail
        if detail is not None and (detail.code or detail.message):
            first_time = ts.nacked_version != ts.sent_version
            ts.nacked_version = ts.sent_version
            ts.nack_detail = detail.message
            ts.nacks += 1
            if first_time:
                self._log.warning(
                    "xds.nack",
                    type=_short(type_url),
                    version=ts.sent_version,
                    kept_version=request.version_info,
                    error=detail.message,
                )
        else:
            ts.acked_version = request.version_info
            ts.acked_at = now
            if ts.sent_at is not None and ts.acked_version == ts.sent_version:
                self._log.info(
                    "xds.ack",
                    type=_short(type_url),
                    version=request.version_info,
                    ms=round((now - ts.sent_at) * 1000, 1),
                )
        self._sidecars.notify()

    async def _maybe_respond(
        self,
        snapshot: Snapshot,
        type_url: str,
        *,
        force: bool,
        added: frozenset[str] = frozenset(),
    ) -> None:
        ts = self.sidecar.types.get(type_url)
        if ts is None or not ts.requested:
            return
        resources = snapshot.by_type.get(type_url)
        version = resources.version if resources else ""
        names = None if ts.wildcard else ts.subscribed
        picked = resources.select(names) if resources else []
        picked_names = frozenset(n for n, _ in picked)
        if not force:
            if version == ts.nacked_version:
                return  # never resend a rejected version
            new_for_stream = bool(added & picked_names)
            if version == ts.sent_version and not new_for_stream:
                return
            if type_url not in FULL_STATE_TYPES and not picked and not new_for_stream:
                return  # nothing this sidecar asked for changed
        self._nonce += 1
        nonce = str(self._nonce)
        body = sotw_body(version, (b for _, b in picked), type_url)
        await self._context.write(sotw_response_bytes(body, nonce))
        ts.sent_version, ts.sent_nonce, ts.sent_names = version, nonce, picked_names
        ts.sent_at = time.monotonic()
        self._log.info(
            "xds.push", type=_short(type_url), version=version, resources=len(picked), nonce=nonce
        )


def _short(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]
