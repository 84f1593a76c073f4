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
from collections.abc import Hashable, Sequence
from typing import Any

import structlog

from redis_sentinel_watch import (
    Address,
    Health,
    PrimaryChange,
    RedisSentinelIO,
    SentinelIO,
    Topology,
    Watcher,
    majority,
)
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import Snapshot
from xds.resources.profiles import Profile, Profiles
from xds.resources.redis_group import GroupSpec
from xds.resources.snapshot import build_snapshot
from xds.service.admin_http import AdminServer
from xds.service.config import Config
from xds.service.metrics import GroupSample, Metrics, SentinelSample, StateSample
from xds.service.secrets import REDACTOR, config_secrets
from xds.service.timeline import FailoverRecord, Timeline, acked_primaries
from xds.service.tls import server_credentials, transport_warning

__all__ = ["FailoverRecord", "Service", "build_watcher", "sentinel_io"]

log = structlog.get_logger("xds.service")


def sentinel_io(config: Config) -> RedisSentinelIO:
    """The Sentinel/Redis I/O the config asks for (timeouts, AUTH, TLS)."""
    return RedisSentinelIO(
        config.watch.sentinel_timeout_s,
        sentinel_auth=config.sentinel_auth,
        redis_auth=config.redis_auth,
        tls=config.tls,
    )


def build_watcher(config: Config, io: SentinelIO) -> Watcher:
    """The watcher the config asks for, over ``io``."""
    return Watcher(
        io,
        config.sentinels,
        [g.name for g in config.groups],
        poll_interval_s=config.watch.poll_interval_s,
        role_check=config.watch.role_check,
        react_on_promotion=config.watch.react_on_promotion,
        promotion_probe_interval_s=config.watch.promotion_probe_interval_s,
        fence_pause_ms=config.watch.fence_pause_ms,
    )


class Service:
    """Runs the whole control plane for one :class:`Config`."""

    def __init__(self, config: Config, io: SentinelIO | None = None) -> None:
        self.config = config
        self.io: SentinelIO = io or sentinel_io(config)
        REDACTOR.add(config_secrets(config))  # logs and admin responses never show them
        self.profiles = Profiles(config.groups)
        self.cache = SnapshotCache(self.profiles.of)
        self.metrics = Metrics()
        self.sidecars = Sidecars(self.metrics)
        self.watcher = build_watcher(config, self.io)
        self.watcher.subscribe(self._on_topology)
        self.xds = XdsServer(
            self.cache,
            self.sidecars,
            max_streams=config.xds_max_streams,
            max_requests_per_second=config.xds_max_requests_per_second,
        )
        self.timeline = Timeline(self.sidecars, self.metrics, self._primary_of)
        self.metrics.add_state(self._metrics_sample)
        self.admin = AdminServer(
            self.status,
            self.ready,
            metrics=self.metrics.render,
            events=self._events,
            drain_notice=self._drain_notice,
            redact=REDACTOR.data,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.exit_code = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        """Bind both listeners, then start watching."""
        tls = self.config.xds_tls
        xds_port = await self.xds.start(
            self.config.xds_listen.host,
            self.config.xds_listen.port,
            server_credentials(tls) if tls is not None else None,
        )
        warning = transport_warning(
            self.config.xds_listen,
            tls,
            any(g.upstream_auth or g.downstream_auth for g in self.config.groups),
        )
        if warning is not None:
            log.warning(
                "xds.transport.unprotected", listen=str(self.config.xds_listen), why=warning
            )
        admin_port = await self.admin.start(self.config.admin_listen)
        self._watch_task = asyncio.create_task(self.watcher.run())
        self._watch_task.add_done_callback(self._watch_ended)
        log.info(
            "service.started",
            xds_port=xds_port,
            xds_transport=tls.mode if tls is not None else "plaintext",
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
            with contextlib.suppress(asyncio.CancelledError, Exception):
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

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        """The watcher never returns on its own: if it died, serving on would mean
        silently missing failovers, so log it and stop (systemd restarts us)."""
        if task.cancelled() or self._stop.is_set():
            return
        log.error("service.watcher_died", error=repr(task.exception()))
        self.exit_code = 1
        self.request_stop("watcher died")

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("service.task_failed", error=repr(task.exception()))

    # ------------------------------------------------------------------ topology → xDS

    def specs(self, topology: Topology) -> list[GroupSpec]:
        primaries = topology.primaries()
        return [
            GroupSpec(
                g.name,
                g.listen,
                primaries.get(g.name),
                op_timeout_ms=g.op_timeout_ms,
                upstream_auth=g.upstream_auth,
                downstream_auth=g.downstream_auth,
            )
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
        specs = self.specs(topology)
        snapshot = build_snapshot(specs)  # the plain profile; raises if inconsistent

        def build(profile: Hashable) -> Snapshot:
            if profile is None:
                return snapshot
            assert isinstance(profile, Profile)
            return self.profiles.snapshot(profile, specs)

        first = self.cache.current() is None
        if not self.cache.publish(tuple(specs), build):
            return
        log.info(
            "xds.snapshot",
            versions=_short_versions(snapshot),
            first=first,
            sidecars=len(self.sidecars),
        )
        for change in changes:
            self._follow(change)

    def _follow(self, change: PrimaryChange) -> None:
        """Follow a primary change to the last sidecar ACK (ends in ``failover.completed``)."""
        if change.old is None or change.new is None:
            return
        record = self.timeline.start(change)
        task = asyncio.create_task(self.timeline.follow(change, record))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _primary_of(self, group: str) -> Address | None:
        current = self.watcher.topology.group(group)
        return current.primary if current else None

    @property
    def failovers(self) -> list[FailoverRecord]:
        """Completed failovers, oldest first (the last 100)."""
        return self.timeline.recent(100)

    def _events(self, n: int) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self.timeline.recent(n)]

    def _drain_notice(self, group: str, node: Address, ttl_s: float) -> str | None:
        """Label the next failover of ``group`` away from ``node`` as a drain (admin API)."""
        if self.config.group(group) is None:
            return f"unknown group {group!r}"
        self.timeline.notices.note(group, node, ttl_s)
        return None

    def _metrics_sample(self) -> StateSample:
        by_protocol: dict[str, int] = {}
        for sc in self.sidecars.all():
            by_protocol[sc.protocol] = by_protocol.get(sc.protocol, 0) + 1
        return StateSample(
            ready=self.ready()[0],
            sidecars_by_protocol=by_protocol,
            groups=[
                GroupSample(
                    g.name,
                    str(g.primary) if g.primary else None,
                    g.health.value,
                    g.agreeing,
                    g.sentinels,
                )
                for g in self.watcher.topology.groups
            ],
            sentinels=[
                SentinelSample(str(v.sentinel), v.reachable, v.tilt) for v in self.watcher.views
            ],
        )

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
                    "drained": [str(r) for r in g.drained],
                    "config_epoch": g.config_epoch,
                    "agreeing": g.agreeing,
                    "sentinels": g.sentinels,
                    "health": g.health.value,
                    "degraded": g.health is not Health.OK,
                    "provisional": g.provisional,
                    "reason": g.reason,
                }
            )
        sidecars = []
        for sc in sorted(self.sidecars.all(), key=lambda s: (s.node_id, s.stream_id)):
            entry = sc.as_dict()
            entry["primaries"] = acked_primaries(sc)
            own = self.cache.current(sc.profile)
            own_versions = own.versions if own is not None else versions
            for url, ts in sc.types.items():
                key = url.rsplit(".", 1)[-1]
                if (
                    ts.requested
                    and own_versions.get(url)
                    and ts.acked_version != own_versions[url]
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
            "failovers": [f.as_dict() for f in self.timeline.recent(20)],
        }


def _short_versions(snapshot: Snapshot) -> dict[str, str]:
    return {url.rsplit(".", 1)[-1]: v for url, v in snapshot.versions.items()}
