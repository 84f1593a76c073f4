"""The composition root: config → watcher → snapshot cache → xDS and admin servers.

Lifecycle reads top-down: :meth:`Service.startup`, :meth:`Service.run` (until a
signal or cancellation), :meth:`Service.shutdown` with a grace deadline.

One rule decides when sidecars first get configuration: nothing is served
until every configured group has a primary that the Sentinels agree on. A
control plane that starts while Sentinel is unreachable must not hand a
running sidecar an empty endpoint list; serving nothing leaves sidecars on
their last good config. After that, the agreement keeps the last good primary
for a group that loses agreement, so a group never goes back to "no primary"
(a reload's new watcher inherits it), and a group added by a reload is left
out of the snapshot until it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import structlog

from redis_sentinel_watch import (
    Address,
    PrimaryChange,
    SentinelIO,
    Topology,
    Watcher,
    majority,
)
from redis_sentinel_watch.auth import Secret
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecar, Sidecars, effective_state
from xds.ads.snapshot import Snapshot
from xds.ads.typeurls import short_type
from xds.resources.profiles import Profile, Profiles
from xds.resources.redis_group import GroupSpec
from xds.resources.snapshot import build_snapshot
from xds.service.admin_auth import admin_token, exposure_error
from xds.service.admin_build import failover_event, group_state, sentinel_state, sidecar_state
from xds.service.admin_documents import EventsDocument, StatusDocument
from xds.service.admin_http import AdminServer
from xds.service.config import Config, ConfigError
from xds.service.metrics import GroupSample, Metrics, SentinelSample, StateSample
from xds.service.reload import prepare_reload, reload_failure
from xds.service.secrets import REDACTOR, config_secrets
from xds.service.systemd import SystemdNotifier, notify_lifecycle, watchdog_interval_s
from xds.service.timeline import KEEP, FailoverRecord, Timeline
from xds.service.tls import (
    RotatingServerCredentials,
    TlsLoadError,
    load_server_tls,
    transport_warning,
)
from xds.service.version import package_version
from xds.service.watchdog import LoopWatchdog
from xds.service.wiring import build_watcher, group_specs, sentinel_io

__all__ = ["FailoverRecord", "Service", "build_watcher", "group_specs", "sentinel_io"]

log = structlog.get_logger("xds.service")


class Service:
    """Runs the whole control plane for one :class:`Config`."""

    def __init__(
        self, config: Config, io: SentinelIO | None = None, *, config_path: str | None = None
    ) -> None:
        self.config = config
        #: the file SIGHUP reloads (None: reloading is off, e.g. a config built in a test)
        self.config_path = config_path
        self.xds_credentials: RotatingServerCredentials | None = None
        self._reload_lock = asyncio.Lock()
        self.io: SentinelIO = io or sentinel_io(config)
        REDACTOR.add(config_secrets(config))  # logs and admin responses never show them
        self.profiles = Profiles(config.groups)
        self.cache = SnapshotCache(self.profiles.of)
        self.metrics = Metrics(version=package_version())
        self.sidecars = Sidecars(self.metrics)
        self.watcher = build_watcher(config, self.io)
        self._listen_to(self.watcher)
        self.xds = XdsServer(
            self.cache,
            self.sidecars,
            max_streams=config.xds_max_streams,
            max_requests_per_second=config.xds_max_requests_per_second,
            max_streams_per_peer=config.xds_max_streams_per_peer,
            first_request_timeout_s=config.xds_first_request_timeout_s,
            max_node_bytes=config.xds_max_node_bytes,
        )
        self.watchdog = LoopWatchdog(on_stall=self.metrics.loop_stalled)
        self.timeline = Timeline(self.sidecars, self.metrics, self._primary_of)
        self.metrics.add_state(self._metrics_sample)
        self.admin = AdminServer(
            self.status,
            self.ready,
            metrics=self.metrics.render,
            events=self._events,
            drain_notice=self._drain_notice,
            redact=REDACTOR.data,
            token=self._admin_token(),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.exit_code = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def startup(self) -> None:
        """Bind both listeners, then start watching."""
        _warm_up_resource_builders()
        self.watchdog.start()
        tls = self.config.xds_tls
        if tls is not None:
            try:
                self.xds_credentials = RotatingServerCredentials(tls, load_server_tls(tls))
            except TlsLoadError as exc:
                raise ConfigError(f"xds.tls.{exc.field}", str(exc)) from None
        if self.config_path is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        xds_port = await self.xds.start(
            self.config.xds_listen.host,
            self.config.xds_listen.port,
            self.xds_credentials.credentials if self.xds_credentials is not None else None,
        )
        warning = transport_warning(self.config.xds_listen, tls)
        if warning is not None:
            log.warning(
                "xds.transport.unprotected", listen=str(self.config.xds_listen), why=warning
            )
        admin_port = await self.admin.start(self.config.admin_listen)
        self._start_watch()
        notify = asyncio.create_task(
            notify_lifecycle(
                SystemdNotifier(), self.ready, self.systemd_status, watchdog_interval_s()
            ),
            name="systemd-notify",
        )
        self._tasks.add(notify)
        notify.add_done_callback(self._task_done)
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

    def _on_sighup(self) -> None:
        task = asyncio.create_task(self.reload(), name="config-reload")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def reload(self) -> bool:
        """Re-read the config file, its secrets and the xDS certificate; apply them only if
        all are valid, else keep serving the old state (see :mod:`xds.service.reload`)."""
        if self.config_path is None:
            return False
        async with self._reload_lock:  # SIGHUPs in a burst apply one after the other
            running_tls = self.xds_credentials.material if self.xds_credentials else None
            try:  # prepare everything that can fail before anything is switched
                plan = await asyncio.to_thread(
                    prepare_reload, self.config_path, self.config, running_tls
                )
                REDACTOR.add(config_secrets(plan.config))
                token = admin_token(plan.config)
                watcher = await self._next_watcher(plan.config) if plan.rewatch else self.watcher
                profiles = Profiles(plan.config.groups)  # sidecars may choose other groups
                staged = self._stage(plan.config, watcher.topology)
            except Exception as exc:  # nothing was switched: say why and keep serving
                field, error = reload_failure(exc)
                log.error("config.reload_failed", field=field, error=error)
                self.metrics.reloads.labels("failure").inc()
                return False
            # apply: assignments only from here on (no await, nothing that can raise), so
            # a reload is never half-applied and the topology staged above is still current
            new = plan.config
            if watcher is not self.watcher:
                self._swap_watcher(watcher)
            self.profiles = profiles  # new streams only: open ones keep their profile
            self.cache.set_profile_of(profiles.of)
            self.io.reconfigure(
                new.watch.sentinel_timeout_s,
                sentinel_auth=new.sentinel_auth,
                redis_auth=new.redis_auth,
                tls=new.tls,
            )
            self.watcher.reconfigure(
                poll_interval_s=new.watch.poll_interval_s,
                role_check=new.watch.role_check,
                react_on_promotion=new.watch.react_on_promotion,
                promotion_probe_interval_s=new.watch.promotion_probe_interval_s,
                fence_pause_ms=new.watch.fence_pause_ms,
            )
            self.admin.set_token(token)
            if plan.tls is not None and self.xds_credentials is not None:
                self.xds_credentials.rotate(plan.tls)
            self.config = new
            if staged is not None:
                self._publish(*staged, ())  # rebuilt groups reach the sidecars
            if plan.ignored:
                log.warning("config.reload_ignored", fields=list(plan.ignored), until="restart")
            log.info("config.reloaded", changed=list(plan.changed))
            self.metrics.reloads.labels("success").inc()
            return True

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
        if self.config_path is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await self.io.aclose()
        self.watchdog.stop()
        log.info("service.stopped")

    async def serve_forever(self) -> None:
        await self.startup()
        try:
            await self.run()
        finally:
            await self.shutdown()

    def _start_watch(self) -> None:
        self._watch_task = asyncio.create_task(self.watcher.run(), name="watch")
        self._watch_task.add_done_callback(self._watch_ended)

    def _listen_to(self, watcher: Watcher) -> None:
        """Serve ``watcher``'s topologies for as long as it is the service's watcher: one
        replaced by a reload may still conclude something while it is cancelled."""

        def on_topology(topology: Topology, changes: Sequence[PrimaryChange]) -> None:
            if watcher is self.watcher:
                self._on_topology(topology, changes)

        watcher.subscribe(on_topology)

    async def _next_watcher(self, config: Config) -> Watcher:
        """A watcher for the reloaded Sentinels and groups, seeded with what the running
        one concluded and polled once, so it takes over with views, reachability and
        the primaries it could agree on (may raise: the reload then fails)."""
        watcher = build_watcher(config, self.io, seed=self.watcher.topology)
        self._listen_to(watcher)
        await watcher.poll_once()
        return watcher

    def _swap_watcher(self, watcher: Watcher) -> None:
        """Make ``watcher`` the one served (cannot fail): the old watch task is cancelled
        without counting as a watcher that died, the new one runs if the old one did."""
        old, self.watcher = self._watch_task, watcher
        if old is None:
            return
        old.remove_done_callback(self._watch_ended)
        old.cancel()
        self._tasks.add(old)
        old.add_done_callback(self._task_done)
        self._start_watch()

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

    def _on_topology(self, topology: Topology, changes: Sequence[PrimaryChange]) -> None:
        staged = self._stage(self.config, topology)
        if staged is not None:
            self._publish(*staged, changes)

    def _stage(self, config: Config, topology: Topology) -> tuple[list[GroupSpec], Snapshot] | None:
        """The specs and plain snapshot ``config`` gives for ``topology``, or None when
        there is nothing to publish: before the first snapshot, a group has no agreed
        primary yet; or the specs (the cache key) are what is served now, as after a
        change of health, dissent or agreeing count alone, which would rebuild every
        resource to throw it away. Raises if the snapshot is inconsistent.

        After the first snapshot only a group added by a reload can lack a primary (the
        others keep their last good one): it is left out until it has one, so waiting for
        it neither withholds the other groups' failovers nor drops their listeners."""
        unknown = [g.name for g in topology.groups if g.primary is None]
        if unknown:
            first = self.cache.current() is None
            log.warning(
                "xds.waiting_for_topology",
                groups=unknown,
                hint="nothing is served until every group has an agreed primary"
                if first
                else "served without these groups until each has an agreed primary",
            )
            if first:
                return None
        specs = [s for s in group_specs(config, topology) if s.primary is not None]
        if self.cache.is_current(tuple(specs)):
            return None
        return specs, build_snapshot(specs)  # the plain profile

    def _publish(
        self, specs: list[GroupSpec], snapshot: Snapshot, changes: Sequence[PrimaryChange]
    ) -> None:
        """Serve ``snapshot`` (other profiles are built from ``specs`` on first use) and
        follow ``changes`` to the sidecars' ACKs. Cannot fail: a profile whose build
        fails keeps its last good snapshot (:meth:`SnapshotCache.current`)."""

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
        """Completed failovers, oldest first (every one the timeline keeps)."""
        return self.timeline.recent(KEEP)

    def _events(self, n: int) -> EventsDocument:
        return EventsDocument(tuple(failover_event(r) for r in self.timeline.recent(n)))

    def _drain_notice(self, group: str, node: Address, ttl_s: float) -> str | None:
        """Label the next failover of ``group`` away from ``node`` as a drain (admin API);
        only for a node the group has now (see :mod:`xds.service.notices`)."""
        if self.config.group(group) is None:
            return f"group: unknown group {group!r}"
        view = self.watcher.topology.group(group)
        known = (
            ((view.primary,) if view.primary else ()) + view.replicas + view.drained
            if view is not None
            else ()
        )
        return self.timeline.notices.note(group, node, ttl_s, known)

    def _admin_token(self) -> Secret | None:
        """The operator token (admin.token_file). Also the startup check of the "no token
        beyond loopback" rule, before anything binds: a :class:`Config` built in code
        (``dataclasses.replace``) skips validation, and the admin server binds what it
        is given (exit 2, one line)."""
        token = admin_token(self.config)
        refused = exposure_error(self.config.admin_listen, token)
        if refused is not None:
            raise ConfigError("admin.listen", refused)
        if token is not None:
            REDACTOR.add([token])
        return token

    def _served_versions(self, sc: Sidecar) -> Mapping[str, str]:
        """What ``sc`` should have ACKed: its own profile's versions (the plain
        snapshot's if that cannot be built), against which it is SYNCED or STALE."""
        served = self.cache.current(sc.profile)
        if served is None:
            served = self.cache.current()
        return served.versions if served is not None else {}

    def _metrics_sample(self) -> StateSample:
        by_protocol: dict[str, int] = {}
        states: dict[tuple[str, str], int] = {}
        for sc in self.sidecars.all():
            by_protocol[sc.protocol] = by_protocol.get(sc.protocol, 0) + 1
            served = self._served_versions(sc)  # the same STALE rule as /status
            for url, ts in sc.types.items():
                key = (short_type(url), effective_state(ts, served.get(url)).value)
                states[key] = states.get(key, 0) + 1
        return StateSample(
            ready=self.ready()[0],
            sidecars_by_protocol=by_protocol,
            sidecar_states=states,
            groups=[
                GroupSample(
                    g.name,
                    str(g.primary) if g.primary else None,
                    g.health.value,
                    g.agreeing,
                    g.sentinels,
                    promotable=len(g.promotable),  # synced and not drained
                    dissenting=tuple(str(d.sentinel) for d in g.dissent),
                )
                for g in self.watcher.topology.groups
            ],
            sentinels=[
                SentinelSample(str(v.sentinel), v.reachable, v.tilt) for v in self.watcher.views
            ],
        )

    # ------------------------------------------------------------------ views

    def systemd_status(self) -> str:
        """One line for ``systemctl status``: every group's primary and health."""
        groups = self.watcher.topology.groups
        if not groups:
            return "waiting for the Sentinels"
        return "; ".join(
            f"{g.name} -> {g.primary or 'no primary'}"
            + ("" if g.health.value == "ok" else f" ({g.health.value})")
            for g in groups
        )

    def ready(self) -> tuple[bool, str]:
        """Ready = serving a snapshot and a majority of Sentinels answered the last poll.

        A group whose failover would now lose data (no synced replica) or fail
        (none at all) stays ready, since readiness is about serving, but the
        reason says so: ``ok; warning: group mymaster has no synced replica: …``.
        """
        if self.cache.current() is None:
            return False, "no agreed primary for every group yet"
        need = majority(len(self.config.sentinels))
        have = self.watcher.reachable_sentinels
        if have < need:
            return False, f"only {have} of {len(self.config.sentinels)} Sentinels reachable"
        risks = [r for g in self.watcher.topology.groups if (r := group_state(g).failover_risk())]
        return True, "; ".join(["ok", *(f"warning: {r}" for r in risks)])

    def status(self) -> StatusDocument:
        """``/status``: what this control plane serves, and to whom."""
        snapshot = self.cache.current()
        versions = snapshot.versions if snapshot else {}
        sidecars = [
            sidecar_state(sc, self._served_versions(sc))
            for sc in sorted(self.sidecars.all(), key=lambda s: (s.node_id, s.stream_id))
        ]
        ok, why = self.ready()
        return StatusDocument(
            ready=ok,
            reason=why,
            versions={short_type(url): v for url, v in versions.items()},
            sentinels=tuple(sentinel_state(v) for v in self.watcher.views),
            groups=tuple(group_state(g) for g in self.watcher.topology.groups),
            sidecars=tuple(sidecars),
            failovers=tuple(failover_event(f) for f in self.timeline.recent(20)),
        )


def _short_versions(snapshot: Snapshot) -> dict[str, str]:
    return {short_type(url): v for url, v in snapshot.versions.items()}


def _warm_up_resource_builders() -> None:
    """Build one throwaway snapshot before anything is served.

    The first build of the process costs 0.35-1 s (betterproto2 resolves every
    message class's type hints once); done here, before the listeners are bound
    and before the watchdog runs, it delays no stream and is no ``loop.stalled``.
    """
    build_snapshot([GroupSpec("warm-up", Address("127.0.0.1", 1), Address("127.0.0.1", 2))])
