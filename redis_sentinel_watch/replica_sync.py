"""Whether each replica holds the primary's data: Sentinel's view and the replica's own word.

Sentinel promotes a replica that has just restarted and not yet synced as
readily as a synced one, and the data is then gone with the other nodes'
resync from it ("the empty-replica trap", ``docs/sentinel.md``). Sentinel's
own view cannot warn about that: measured on Redis 7.0, ``SENTINEL REPLICAS``
kept showing ``master-link-status:ok`` and an old ``slave-repl-offset`` for
up to 10 s (its INFO period) after the replica was killed and restarted
empty, and it clears ``s_down``/``disconnected`` within a second of the
restart. So a replica counts as synced only when

* no Sentinel that agrees on the primary flags it ``s_down``, ``o_down`` or
  ``disconnected``, nor reports its ``master-link-status`` as ``err``, and
* its own ``INFO replication`` (asked by :class:`ReplicaSyncCheck`, at most
  once a second, off the failover path) says ``role:slave`` of the group's
  primary, ``master_link_status:up`` and ``master_sync_in_progress:0``.

Offsets are not compared: Sentinel's is as stale as its link status, and the
replica's own, asked a moment apart from the primary's, differs under load by
whatever is in flight; a replica with its link up after a sync is streaming
the primary's writes. When the Redis user may not run ``INFO`` (ACL), the
judgement falls back on Sentinel's view alone, and says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import structlog

from .errors import NoPermissionError, WatchError
from .io import SentinelIO
from .model import (
    Address,
    GroupTopology,
    ReplicaEntry,
    ReplicaState,
    ReplicaSync,
    SentinelView,
    Topology,
)
from .replies import ReplicationInfo

__all__ = ["ReplicaSyncCheck", "judge_replica", "replica_states"]

log = structlog.get_logger("redis_sentinel_watch")

#: What asking one replica gave: its INFO replication, or why it could not be asked.
Answer = ReplicationInfo | WatchError


def _entries(
    views: Sequence[SentinelView], group: GroupTopology
) -> dict[Address, list[ReplicaEntry]]:
    """Each replica's entries from the Sentinels that name the group's primary."""
    out: dict[Address, list[ReplicaEntry]] = {}
    for v in views:
        gv = v.groups.get(group.name) if v.reachable else None
        if gv is None or gv.primary != group.primary:
            continue
        for entry in gv.replica_entries:
            out.setdefault(entry.address, []).append(entry)
    return out


def judge_replica(
    entries: Sequence[ReplicaEntry], answer: Answer | None, primary: Address
) -> tuple[ReplicaSync, str]:
    """One replica's :class:`ReplicaSync` and why, from what Sentinels and it said."""
    for entry in entries:
        if entry.down:
            flags = sorted(entry.flags & {"s_down", "o_down", "disconnected"})
            return ReplicaSync.DOWN, f"Sentinel flags it {','.join(flags)}"
    sentinel_link_down = any(not e.link_ok for e in entries)
    if isinstance(answer, NoPermissionError):
        if sentinel_link_down:
            return ReplicaSync.UNSYNCED, "Sentinel reports its replication link down"
        return ReplicaSync.SYNCED, f"Sentinel's view only ({answer})"
    if answer is None:
        return ReplicaSync.UNKNOWN, "not asked yet"
    if isinstance(answer, WatchError):
        return ReplicaSync.UNKNOWN, f"cannot ask it: {answer}"
    if answer.role != "slave":
        return ReplicaSync.UNSYNCED, f"it reports role {answer.role}"
    if answer.master is None or not answer.master.same_endpoint(primary):
        return ReplicaSync.UNSYNCED, f"it replicates {answer.master}, not {primary}"
    if answer.sync_in_progress:
        return ReplicaSync.UNSYNCED, "a full sync from the primary is in progress"
    if not answer.link_up:
        return ReplicaSync.UNSYNCED, "its replication link is down"
    if sentinel_link_down:
        # Sentinel refreshes its INFO every 10 s; until then it may lag the replica.
        return ReplicaSync.UNSYNCED, "Sentinel still reports its replication link down"
    return ReplicaSync.SYNCED, ""


def replica_states(
    group: GroupTopology, views: Sequence[SentinelView], answers: Mapping[Address, Answer]
) -> tuple[ReplicaState, ...]:
    """Every replica of ``group`` (Sentinel's list, down ones included) and its sync state."""
    if group.primary is None:
        return ()
    entries = _entries(views, group)
    addresses = {*entries, *group.replicas, *group.drained} - {group.primary}
    return tuple(
        ReplicaState(a, *judge_replica(entries.get(a, ()), answers.get(a), group.primary))
        for a in sorted(addresses)
    )


class ReplicaSyncCheck:
    """Asks every replica its ``INFO replication`` now and then, and annotates topologies.

    :meth:`refresh` runs as a task of its own, at most every ``interval_s``,
    so a slow or dead replica never delays a poll (and with it a failover).
    :meth:`annotate` is pure and cheap: it runs on every topology the watcher
    publishes, with the latest answers.
    """

    def __init__(
        self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._answers: dict[Address, Answer] = {}
        self._started = -math.inf
        self._running = False
        self._logged: dict[tuple[str, Address], ReplicaSync] = {}

    def due(self) -> bool:
        """Whether a new :meth:`refresh` should start now."""
        return not self._running and self._clock() - self._started >= self.interval_s

    async def refresh(
        self, io: SentinelIO, topology: Topology, views: Sequence[SentinelView]
    ) -> None:
        """Ask every replica that no Sentinel flags down (concurrently; never raises)."""
        self._started = self._clock()
        self._running = True
        try:
            wanted: set[Address] = set()
            for group in topology.groups:
                for state in replica_states(group, views, {}):
                    if state.sync is not ReplicaSync.DOWN:
                        wanted.add(state.address)
            asked = sorted(wanted)
            answers = await asyncio.gather(*(self._ask(io, a) for a in asked))
            self._answers = dict(zip(asked, answers, strict=True))
        finally:
            self._running = False

    @staticmethod
    async def _ask(io: SentinelIO, node: Address) -> Answer:
        try:
            return await io.replication(node)
        except WatchError as exc:
            return exc

    def annotate(self, topology: Topology, views: Sequence[SentinelView]) -> Topology:
        """``topology`` with each group's :attr:`GroupTopology.replica_states` filled in
        (and ``replica.sync_changed`` logged once per replica whose state changed)."""
        groups = tuple(
            dataclasses.replace(g, replica_states=replica_states(g, views, self._answers))
            for g in topology.groups
        )
        for g in groups:
            for r in g.replica_states:
                key = (g.name, r.address)
                if r.sync is not ReplicaSync.UNKNOWN and self._logged.get(key) is not r.sync:
                    self._logged[key] = r.sync
                    log.info(
                        "replica.sync_changed",
                        group=g.name,
                        replica=str(r.address),
                        sync=r.sync.value,
                        detail=r.detail,
                        promotable_synced=len(g.promotable),
                    )
        return Topology(groups)
