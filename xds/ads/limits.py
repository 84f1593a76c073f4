"""Fairness limits on the xDS port, and how a refusal is counted and logged.

The global ``max_streams`` keeps a replica from serving more sidecars than it
can push to quickly; on its own it lets one peer take every slot. So:

* ``max_streams_per_peer`` (default 64): streams open from one peer *address*
  (the port is ignored: one host's connections share a budget). A real host
  runs one sidecar, a few during a restart; 64 leaves room for a host running
  many containers behind one address, and keeps any one address to a small
  share of the default global 5000;
* ``first_request_timeout_s`` (default 10 s): a stream that has sent nothing
  by then is closed with DEADLINE_EXCEEDED and frees its slot. Envoy sends
  its first request right after the stream opens (milliseconds), also when it
  reconnects; 199 idle streams must not be able to lock out new sidecars;
* ``max_node_bytes`` (:mod:`xds.ads.node`): a bigger Node ends the stream with
  INVALID_ARGUMENT.

Every refusal is counted through the observer with its reason
(``sentinel_xds_streams_refused_total{reason=…}``) and logged as
``xds.stream.refused`` at most once per :data:`REFUSED_LOG_INTERVAL_S` per
reason, with how many were not logged: a storm must not flood the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from xds.ads.loglimit import LogLimiter
from xds.ads.node import NodeDecoder
from xds.ads.sidecars import XdsObserver

__all__ = [
    "DEFAULT_FIRST_REQUEST_TIMEOUT_S",
    "DEFAULT_MAX_STREAMS_PER_PEER",
    "REASONS",
    "REFUSED_LOG_INTERVAL_S",
    "Refusals",
    "StreamLimits",
    "peer_host",
]

log = structlog.get_logger("xds.server")

DEFAULT_MAX_STREAMS_PER_PEER = 64
DEFAULT_FIRST_REQUEST_TIMEOUT_S = 10.0
#: at most one ``xds.stream.refused`` line per reason per this many seconds
REFUSED_LOG_INTERVAL_S = 5.0
#: why a stream was refused or closed early (the metric's ``reason`` label)
REASONS = ("max_streams", "max_streams_per_peer", "first_request_timeout", "node_limits")

HINTS = {
    "max_streams": "raise xds.max_streams or add a control-plane replica",
    "max_streams_per_peer": "one address holds too many streams: a broken or hostile client, "
    "or raise xds.max_streams_per_peer for a host running many sidecars",
    "first_request_timeout": "a client opened a stream and sent nothing: broken or hostile",
    "node_limits": "a client sent a Node over the limits: broken or hostile, or raise "
    "xds.max_node_bytes",
}


def peer_host(peer: str) -> str:
    """The address part of a gRPC peer string, without the port.

    ``ipv4:127.0.0.1:5000`` → ``127.0.0.1``, ``ipv6:[::1]:5000`` → ``::1``;
    anything else (``unix:…``) is returned whole.
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    return peer


class Refusals:
    """Counts refusals through the observer and logs them, rate-limited per reason."""

    def __init__(self, observer: XdsObserver) -> None:
        self.observer = observer
        self.total = 0
        self.by_reason: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._limiter = LogLimiter(REFUSED_LOG_INTERVAL_S)

    def refuse(self, reason: str, peer: str, **fields: Any) -> None:
        self.total += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.observer.stream_refused(reason)
        skipped = self._limiter.allow(reason)
        if skipped is None:
            return
        log.warning(
            "xds.stream.refused",
            reason=reason,
            peer=peer,
            not_logged_since_last=skipped,
            refused_total=self.total,
            hint=HINTS.get(reason, ""),
            **fields,
        )


@dataclass
class StreamLimits:
    """What every stream of one server shares: its limits and the refusal counter."""

    refusals: Refusals
    nodes: NodeDecoder = field(default_factory=NodeDecoder)
    first_request_timeout_s: float | None = DEFAULT_FIRST_REQUEST_TIMEOUT_S
    max_requests_per_second: float | None = None
