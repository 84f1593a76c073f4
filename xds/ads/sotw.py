"""State-of-the-World ADS: one bidirectional stream per sidecar, all types multiplexed.

Protocol rules followed (xDS protocol document, "ACK/NACK and versioning",
"Resource updates", "When to send an update"):

* the node is taken from the first request only (:mod:`xds.ads.stream`);
* every response carries a fresh nonce; a request whose ``response_nonce`` is
  not the last nonce we sent *for that type* is stale and ignored entirely, so
  a request racing a newer response can neither ACK nor NACK it nor change the
  subscription (the sidecar will send the current one with the fresh nonce);
* a request carrying our last nonce is an ACK, unless ``error_detail`` is set,
  which makes it a NACK; we never resend a version that was NACKed (no NACK
  loop): the sidecar keeps its last good config, and the next different
  version goes out when the topology changes;
* the first request for each type is always answered, even with an empty set,
  so a sidecar never waits on initialisation (go-control-plane #927);
* an ACK with no change gets no response;
* LDS and CDS are wildcard when the request names nothing (legacy) or names
  ``*`` (explicit) and then carry the full set; otherwise (and always for EDS)
  responses carry the names requested, names that do not exist yet are
  answered when they appear, and a newly requested name is sent even if its
  version did not change;
* on a change, types go out in make-before-break order: CDS, EDS, then LDS.

Resources come pre-serialized from the snapshot, so per stream we only frame
and send bytes (see :mod:`xds.ads.wire`).
"""

from __future__ import annotations

import time
from typing import Any

from xds.ads.discovery_request import SotwRequest
from xds.ads.sidecars import TypeState
from xds.ads.snapshot import FULL_STATE_TYPES, PUSH_ORDER, TypeResources
from xds.ads.stream import AdsStream
from xds.ads.typeurls import WILDCARD, short_type
from xds.ads.wire import sotw_response_bytes

__all__ = ["SotwStream"]


class SotwStream(AdsStream[SotwRequest]):
    """Serves one SotW ADS stream. Create one per RPC and ``await run()``."""

    protocol = "sotw"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # per type: the (name, resource version) pairs last sent on this stream
        self._sent_content: dict[str, frozenset[tuple[str, str]]] = {}

    async def on_change(self) -> None:
        for type_url in PUSH_ORDER:
            await self._maybe_respond(type_url, force=False)

    async def on_request(self, request: SotwRequest) -> None:
        type_url = request.type_url
        self.check_request(type_url, len(request.resource_names))
        ts = self.sidecar.type(type_url)
        first = not ts.requested
        if request.response_nonce and not first:  # a first request is answered whatever it says
            if request.response_nonce != ts.sent_nonce:
                self.log.debug(
                    "xds.stale_nonce",
                    type=short_type(type_url),
                    nonce=request.response_nonce,
                    latest=ts.sent_nonce,
                )
                return
            self._ack_or_nack(type_url, ts, request)
        names = frozenset(request.resource_names)
        wildcard = type_url in FULL_STATE_TYPES and (not names or WILDCARD in names)
        added = names - ts.subscribed
        ts.requested = True
        ts.subscribed = names - {WILDCARD}
        ts.wildcard = wildcard
        if self.snapshot is None:
            return  # nothing to serve yet; the first snapshot will be pushed
        await self._maybe_respond(type_url, force=first, added=added)

    def _ack_or_nack(self, type_url: str, ts: TypeState, request: SotwRequest) -> None:
        if request.error is not None:
            self.record_nack(
                type_url, ts, ts.sent_version, request.error, kept_version=request.version_info
            )
        else:
            fresh = request.version_info == ts.sent_version
            self.record_ack(type_url, ts, request.version_info, fresh=fresh)

    async def _maybe_respond(
        self, type_url: str, *, force: bool, added: frozenset[str] = frozenset()
    ) -> None:
        ts = self.sidecar.types.get(type_url)
        if ts is None or not ts.requested or self.snapshot is None:
            return
        resources = self.snapshot.by_type.get(type_url)
        if resources is None:
            resources = TypeResources.from_bytes(type_url, {})
        version = resources.version
        view = resources.sotw_view(None if ts.wildcard else ts.subscribed)
        if not force:
            if version == ts.nacked_version:
                return  # never resend a rejected version
            # EDS versions move when any group changes, but a sidecar only needs a
            # response when something it subscribed to did
            if view.content == self._sent_content.get(type_url) and not (added & view.names):
                return
            if type_url not in FULL_STATE_TYPES and not view.names:
                return  # nothing it asked for exists; an empty EDS response would be a no-op
        nonce = self.next_nonce()
        ts.sent_version, ts.sent_nonce, ts.sent_names = version, nonce, view.names
        ts.sent_at = time.monotonic()
        self._sent_content[type_url] = view.content
        await self.send(sotw_response_bytes(view.body, nonce))
        self._sidecars.observer.pushed(type_url)
        self.log.debug(
            "xds.push",
            type=short_type(type_url),
            version=version,
            resources=len(view.names),
            nonce=nonce,
        )
