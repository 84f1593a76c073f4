"""Delta (incremental) ADS: ``DeltaAggregatedResources``, chosen by the sidecar's bootstrap.

Where it differs from State of the World (:mod:`xds.ads.sotw`), following the xDS
protocol document ("Incremental xDS"):

* subscriptions are changes (``resource_names_subscribe`` /
  ``_unsubscribe``), so no request is ever ignored: a request whose
  ``response_nonce`` is not one we are waiting on cannot ACK or NACK anything,
  but its subscription changes still apply (ignoring them, as SotW does with a
  stale request, would lose them for good);
* every response has its own nonce and ACKs may arrive for any of several
  responses in flight; an ACK or NACK settles that response and every older one;
* each resource carries its own version (a hash of its bytes); the stream
  remembers which version of each resource the sidecar holds and sends only
  what differs, in one response per type;
* a name in ``resource_names_subscribe`` is always sent, even if the sidecar
  was sent that version before, because the sidecar may have dropped it;
* on a new stream, ``initial_resource_versions`` says what the sidecar already
  holds from a previous stream: those are not re-sent if unchanged, and those
  that no longer exist are removed;
* wildcard: the first request naming nothing (legacy) or any request naming
  ``*`` (explicit) subscribes to every resource of the type; unsubscribing
  ``*`` ends it;
* Listeners and Clusters that disappear are sent in ``removed_resources``.
  ClusterLoadAssignments are not: Envoy drops them with the cluster that uses
  them, and removing one first would empty a cluster Envoy is still draining;
* a NACKed resource version is never re-sent; the next different one is.

As in SotW, the first request for each type is always answered (even when
empty) and changes go out CDS, then EDS, then LDS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from xds.ads.discovery_request import DeltaRequest
from xds.ads.snapshot import FULL_STATE_TYPES, PUSH_ORDER
from xds.ads.stream import MAX_RESOURCE_NAMES, AdsStream, ProtocolError
from xds.ads.typeurls import WILDCARD, short_type
from xds.ads.wire import delta_response_bytes

__all__ = ["DeltaStream"]

#: responses remembered per type while waiting for their ACK or NACK
MAX_IN_FLIGHT = 64


@dataclass
class _Sent:
    """One response still waiting for its ACK or NACK."""

    version: str
    resources: dict[str, str]  # name → version


@dataclass
class _TypeSubscription:
    """Delta protocol state for one type on one stream."""

    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what the sidecar holds
    nacked: dict[str, str] = field(default_factory=dict)  # versions it rejected
    in_flight: dict[int, _Sent] = field(default_factory=dict)  # nonce → response

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


class DeltaStream(AdsStream[DeltaRequest]):
    """Serves one Delta ADS stream. Create one per RPC and ``await run()``."""

    protocol = "delta"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subs: dict[str, _TypeSubscription] = {}

    async def on_change(self) -> None:
        for type_url in PUSH_ORDER:
            if type_url in self._subs:
                await self._respond(type_url, initial=False)

    async def on_request(self, request: DeltaRequest) -> None:
        type_url = request.type_url
        self.check_request(
            type_url,
            len(request.subscribe) + len(request.unsubscribe) + len(request.initial_versions),
        )
        ts = self.sidecar.type(type_url)
        first = type_url not in self._subs
        sub = self._subs.setdefault(type_url, _TypeSubscription())
        if request.response_nonce:
            self._settle(type_url, sub, request)
        if first:
            sub.known = {n: v for n, v in request.initial_versions.items() if n != WILDCARD}
            sub.wildcard = not request.subscribe
        for name in request.subscribe:
            if name == WILDCARD:
                sub.wildcard = True
                continue
            sub.names.add(name)
            if not (first and name in request.initial_versions):
                sub.known.pop(name, None)  # always sent, even if sent before
        for name in request.unsubscribe:
            if name == WILDCARD:
                sub.wildcard = False
            else:
                sub.names.discard(name)
        if len(sub.names) > MAX_RESOURCE_NAMES:  # subscriptions add up across requests
            raise ProtocolError(f"more than {MAX_RESOURCE_NAMES} subscribed names for {type_url}")
        for name in [n for n in sub.known if not sub.wants(n)]:
            del sub.known[name]  # the sidecar dropped it
        ts.requested = True
        ts.wildcard = sub.wildcard
        ts.subscribed = frozenset(sub.names)
        if self.snapshot is not None:
            await self._respond(type_url, initial=first)

    def _settle(self, type_url: str, sub: _TypeSubscription, request: DeltaRequest) -> None:
        """ACK or NACK of the response with ``request.response_nonce`` (and older ones)."""
        try:
            nonce = int(request.response_nonce)
        except ValueError:
            nonce = -1
        sent = sub.in_flight.get(nonce)
        if sent is None:
            self.log.debug(
                "xds.stale_nonce", type=short_type(type_url), nonce=request.response_nonce
            )
            return
        for older in [n for n in sub.in_flight if n <= nonce]:
            del sub.in_flight[older]
        ts = self.sidecar.type(type_url)
        if request.error is not None:
            for name, version in sent.resources.items():
                sub.nacked[name] = version
                sub.known.pop(name, None)  # it kept an older one we cannot name
            self.record_nack(
                type_url, ts, sent.version, request.error, resources=sorted(sent.resources)
            )
        else:
            for name in sent.resources:
                sub.nacked.pop(name, None)
            self.record_ack(type_url, ts, sent.version, fresh=True)

    async def _respond(self, type_url: str, *, initial: bool) -> None:
        sub = self._subs[type_url]
        assert self.snapshot is not None
        resources = self.snapshot.by_type.get(type_url)
        current = (
            {n: v for n, v in resources.resource_versions.items() if sub.wants(n)}
            if resources
            else {}
        )
        to_send = [
            n for n, v in current.items() if sub.known.get(n) != v and sub.nacked.get(n) != v
        ]
        removed = (
            sorted(n for n in sub.known if n not in current) if type_url in FULL_STATE_TYPES else []
        )
        if not to_send and not removed and not initial:
            return
        version = resources.version if resources else ""
        nonce = self.next_nonce()
        body = delta_response_bytes(
            version,
            (resources.delta_items[n] for n in to_send) if resources else (),
            type_url,
            nonce,
            removed,
        )
        sent = {n: current[n] for n in to_send}
        sub.in_flight[int(nonce)] = _Sent(version, sent)
        if len(sub.in_flight) > MAX_IN_FLIGHT:  # a client that never answers: forget the oldest
            del sub.in_flight[min(sub.in_flight)]
        sub.known.update(sent)
        for name in removed:
            del sub.known[name]
        ts = self.sidecar.type(type_url)
        # what it holds that still exists (for EDS, the old primary's name drops out here)
        ts.sent_names = frozenset(n for n in sub.known if n in current)
        ts.sent_version, ts.sent_nonce = version, nonce
        ts.sent_at = time.monotonic()
        await self.send(body)
        self._sidecars.observer.pushed(type_url)
        self.log.debug(
            "xds.push",
            type=short_type(type_url),
            version=version,
            resources=len(to_send),
            removed=len(removed),
            nonce=nonce,
        )
