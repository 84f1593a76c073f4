"""The composition root: config → watcher → snapshot cache → xDS and admin servers.

Lifecycle reads top-down: :meth:`Service.startup`, :meth:`Service.run` (until a
signal or cancellation), :meth:`Service.shutdown` with a grace deadline.

One rule decides when sidecars first get configuration: nothing is served
until every configured group has a primary that the Sentinels agree on. A
control plane that starts while Sentinel is unreachable must not hand a
running sidecar an empty endpoint list; serving nothing leaves sidecars on
their last good config. After that, the agreement keeps the last good primary
for a group that loses agreement, so a group never goes back to "no primary".
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from redis_sentinel_watch import (
    Health,
    PrimaryChange,
    RedisSentinelIO,
    SentinelIO,
    Topology,
    Watcher,
    majority,
)

from .admin import AdminServer
from .cache import SnapshotCache
from .config import Config
from .grpc_server import XdsServer
from .resources import GroupSpec
from .sidecars import Sidecars
from .snapshot import CLUSTER, ENDPOINT, Snapshot, build_snapshot

__all__ = ["FailoverRecord", "Service"]

log = structlog.get_logger("xds.service")

ACK_WAIT_S = 30.0


@dataclass
class FailoverRecord:
    """One primary change from first sign to last ACK (the on-call timeline)."""

    group: str
    old: str | None
    new: str | None
    trigger: str
    epoch: int
    at: float = field(default_factory=time.time)
    detect_to_switch_ms: float | None = None
    switch_to_push_ms: float | None = None
    detect_to_acked_ms: float | None = None
    acked: int = 0
    sidecars: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Service:
    """Runs the whole control plane for one :class:`Config`."""

    def __init__(self, config: Config, io: SentinelIO | None = None) -> None:
        self.config = config
        self.io: SentinelIO = io or RedisSentinelIO(config.watch.sentinel_timeout_s)
        self.cache = SnapshotCache()
        self.sidecars = Sidecars()
        self.watcher = Watcher(
            self.io,
            config.sentinels,
            [g.name for g in config.groups],
            poll_interval_s=config.watch.poll_interval_s,
            role_check=config.watch.role_check,
        )
        self.watcher.subscribe(self._on_topology)
        self.xds = XdsServer(self.cache, self.sidecars)
        self.admin = AdminServer(self.status, self.ready)
        self.failovers: list[FailoverRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        """Bind both listeners, then start watching."""
        xds_port = await self.xds.start(self.config.xds_listen)
        admin_port = await self.admin.start(self.config.admin_listen)
        self._watch_task = asyncio.create_task(self.watcher.run())
        log.info(
            "service.started",
            xds_port=xds_port,
            admin_port=admin_port,
            sentinels=[str(s) for s in self.config.sentinels],
            groups=[g.name for g in self.config.groups],
        )

    async def run(self) -> None:
        """Until SIGTERM/SIGINT (or :meth:`request_stop`)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, sig.name)
        await self._stop.wait()

    def request_stop(self, why: str = "requested") -> None:
        log.info("service.stopping", reason=why)
        self._stop.set()

    async def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop watching, end streams (sidecars keep their config), close everything."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for task in list(self._tasks):
            task.cancel()
        await self.xds.stop(grace_s)
        await self.admin.stop()
        await self.io.aclose()
        log.info("service.stopped")

    async def serve_forever(self) -> None:
        await self.startup()
        try:
            await self.run()
        finally:
            await self.shutdown()

    # ------------------------------------------------------------------ topology → xDS

    def specs(self, topology: Topology) -> list[GroupSpec]:
        primaries = topology.primaries()
        return [
            GroupSpec(g.name, g.listen, primaries.get(g.name), op_timeout_ms=g.op_timeout_ms)
            for g in self.config.groups
        ]

    def _on_topology(self, topology: Topology, changes: Sequence[PrimaryChange]) -> None:
        unknown = [g.name for g in topology.groups if g.primary is None]
        if unknown:
            log.warning(
                "xds.waiting_for_topology",
                groups=unknown,
                hint="nothing is served until every group has an agreed primary",
            )
            return
        snapshot = build_snapshot(self.specs(topology))
        first = self.cache.current() is None
        if not self.cache.set(snapshot):
            return
        pushed_at = time.monotonic()
        log.info(
            "xds.snapshot",
            versions=_short_versions(snapshot),
            first=first,
            sidecars=len(self.sidecars),
        )
        for change in changes:
            if change.old is None:
                continue
            task = asyncio.create_task(self._follow_failover(change, snapshot, pushed_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _follow_failover(
        self, change: PrimaryChange, snapshot: Snapshot, pushed_at: float
    ) -> None:
        """Wait for every sidecar to ACK the new cluster and endpoints, then log the timeline."""
        record = FailoverRecord(
            group=change.group,
            old=str(change.old) if change.old else None,
            new=str(change.new) if change.new else None,
            trigger=change.trigger,
            epoch=change.epoch,
        )
        start = change.first_sign_at if change.first_sign_at is not None else change.switched_at
        record.detect_to_switch_ms = _ms(change.switched_at - start)
        record.switch_to_push_ms = _ms(pushed_at - change.switched_at)
        acked, total = await self.sidecars.wait_acked(
            CLUSTER, snapshot.version(CLUSTER), ACK_WAIT_S
        )
        acked_eds, _ = await self.sidecars.wait_acked(
            ENDPOINT, snapshot.version(ENDPOINT), ACK_WAIT_S
        )
        record.acked, record.sidecars = min(acked, acked_eds), total
        record.detect_to_acked_ms = _ms(time.monotonic() - start)
        self.failovers.append(record)
        del self.failovers[:-100]
        log.info("failover.completed", **record.as_dict())

    # ------------------------------------------------------------------ views

    def ready(self) -> tuple[bool, str]:
        """Ready = serving a snapshot and a majority of Sentinels answered the last poll."""
        if self.cache.current() is None:
            return False, "no agreed primary for every group yet"
        need = majority(len(self.config.sentinels))
        have = self.watcher.reachable_sentinels
        if have < need:
            return False, f"only {have} of {len(self.config.sentinels)} Sentinels reachable"
        return True, "ok"

    def status(self) -> dict[str, Any]:
        snapshot = self.cache.current()
        versions = snapshot.versions if snapshot else {}
        groups = []
        for g in self.watcher.topology.groups:
            groups.append(
                {
                    "name": g.name,
                    "primary": str(g.primary) if g.primary else None,
                    "replicas": [str(r) for r in g.replicas],
                    "config_epoch": g.config_epoch,
                    "agreeing": g.agreeing,
                    "sentinels": g.sentinels,
                    "health": g.health.value,
                    "degraded": g.health is not Health.OK,
                    "reason": g.reason,
                }
            )
        sidecars = []
        for sc in sorted(self.sidecars.all(), key=lambda s: (s.node_id, s.stream_id)):
            entry = sc.as_dict()
            for url, ts in sc.types.items():
                key = url.rsplit(".", 1)[-1]
                if (
                    ts.requested
                    and versions.get(url)
                    and ts.acked_version != versions[url]
                    and entry["types"][key]["state"] == "SYNCED"
                ):
                    entry["types"][key]["state"] = "STALE"
            sidecars.append(entry)
        ok, why = self.ready()
        return {
            "ready": ok,
            "reason": why,
            "versions": {url.rsplit(".", 1)[-1]: v for url, v in versions.items()},
            "sentinels": [
                {
                    "address": str(v.sentinel),
                    "reachable": v.reachable,
                    "tilt": v.tilt,
                    "error": v.error,
                }
                for v in self.watcher.views
            ],
            "groups": groups,
            "sidecars": sidecars,
            "failovers": [f.as_dict() for f in self.failovers[-20:]],
        }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _short_versions(snapshot: Snapshot) -> dict[str, str]:
    return {url.rsplit(".", 1)[-1]: v for url, v in snapshot.versions.items()}
