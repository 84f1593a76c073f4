"""The admin documents built from live state: the service's topology, streams and timeline.

:mod:`xds.service.admin_documents` defines the documents and nothing else (so
clients load it cheaply); these functions fill them in from the watcher's
:class:`~redis_sentinel_watch.GroupTopology` and :class:`~redis_sentinel_watch.SentinelView`,
the protocol layer's :class:`~xds.ads.sidecars.Sidecar` and the timeline's
:class:`~xds.service.timeline.FailoverRecord`, field by field, so a renamed
field on either side fails mypy here; the failover record, which declares
the same fields as its document, is copied by name (:func:`failover_event`).
:meth:`xds.service.app.Service.status` assembles them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict

from redis_sentinel_watch import GroupTopology, Health, SentinelView
from redis_sentinel_watch.model import Dissent
from xds.ads.sidecars import Sidecar, effective_state
from xds.ads.typeurls import short_type
from xds.service.admin_documents import (
    DissentState,
    FailoverEvent,
    GroupState,
    ReplicaSyncState,
    SentinelState,
    SidecarState,
    TypeSync,
)
from xds.service.timeline import FailoverRecord, acked_primaries

__all__ = ["dissent_state", "failover_event", "group_state", "sentinel_state", "sidecar_state"]


def group_state(g: GroupTopology) -> GroupState:
    return GroupState(
        name=g.name,
        primary=str(g.primary) if g.primary else None,
        replicas=tuple(str(r) for r in g.replicas),
        drained=tuple(str(r) for r in g.drained),
        config_epoch=g.config_epoch,
        agreeing=g.agreeing,
        sentinels=g.sentinels,
        health=g.health,
        degraded=g.health is not Health.OK,
        provisional=g.provisional,
        reason=g.reason,
        dissent=tuple(dissent_state(d) for d in g.dissent),
        replica_sync=tuple(
            ReplicaSyncState(str(r.address), r.sync, r.detail) for r in g.replica_states
        ),
    )


def dissent_state(d: Dissent) -> DissentState:
    return DissentState(
        sentinel=str(d.sentinel),
        reasons=d.reasons,
        primary=str(d.primary) if d.primary else None,
        epoch=d.epoch,
        majority_primary=str(d.majority_primary),
        majority_epoch=d.majority_epoch,
    )


def sentinel_state(v: SentinelView) -> SentinelState:
    return SentinelState(str(v.sentinel), v.reachable, v.tilt, v.error)


def sidecar_state(sc: Sidecar, versions: Mapping[str, str]) -> SidecarState:
    """One stream as ``/status`` shows it; ``versions`` are what its profile serves now.

    A type the sidecar ACKed at an older version than we serve is STALE even
    before we push the new one (the push may be in flight or still queued):
    :func:`~xds.ads.sidecars.effective_state`, the rule ``/metrics`` uses too.
    """
    types: dict[str, TypeSync] = {}
    for url, ts in sorted(sc.types.items()):
        types[short_type(url)] = TypeSync(
            effective_state(ts, versions.get(url)),
            ts.sent_version,
            ts.acked_version,
            ts.nacked_version,
            ts.nack_detail,
            ts.nacks,
        )
    return SidecarState(
        stream_id=sc.stream_id,
        node_id=sc.node_id,
        cluster=sc.cluster,
        envoy_version=sc.envoy_version,
        peer=sc.peer,
        protocol=sc.protocol,
        connected_since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sc.connected_at)),
        types=types,
        primaries=acked_primaries(sc),
    )


def failover_event(r: FailoverRecord) -> FailoverEvent:
    """The timeline's record as the document: the two declare the same fields (the
    record is mutable while the timeline follows the ACKs, the document frozen), so
    it is copied field by field by name. A field added to one and not the other
    fails here with a TypeError, in the unit tests that build ``/events``."""
    return FailoverEvent(**asdict(r))
