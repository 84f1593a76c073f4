"""Prometheus metrics for ``/metrics``: one registry per service, not the global one.

Two kinds of metric live here. Counters and the push-to-ACK histogram count
things as they happen: the protocol layer reports pushes, ACKs and NACKs
through the :class:`~xds.ads.sidecars.XdsObserver` interface (so it never imports
prometheus), and the failover timeline reports completed failovers. Gauges
that describe the present (connected sidecars, each group's primary, Sentinel
reachability) are read at scrape time from a :class:`StateSample` the service
builds, so they can never drift from ``/status``.

A private :class:`~prometheus_client.CollectorRegistry` keeps two services in
one process (tests) from colliding, and keeps the library's process metrics
out unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from xds.ads.limits import REASONS as REFUSAL_REASONS
from xds.ads.typeurls import CLUSTER, ENDPOINT, LISTENER, short_type

__all__ = [
    "CONTENT_TYPE",
    "TRIGGERS",
    "GroupSample",
    "Metrics",
    "SentinelSample",
    "StateSample",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "sentinel_xds"

#: failover triggers, as in ``failover.completed`` (see :mod:`xds.service.timeline`)
TRIGGERS: tuple[str, ...] = ("sentinel-event", "drain", "reconcile")

#: resource types, short names (label values)
TYPES: tuple[str, ...] = tuple(short_type(url) for url in (CLUSTER, ENDPOINT, LISTENER))

#: sync states a sidecar's resource type is counted in (NOT_SENT is not a sync state)
SIDECAR_STATES: tuple[str, ...] = ("SYNCED", "STALE", "NACKED")

#: failover phases as histograms: first sign → switch, → push, → last ACK
PHASES: tuple[str, ...] = ("detect_to_switch", "detect_to_push", "detect_to_acked")

#: a failover takes ~20 ms (planned) to a few seconds (kill -9, Sentinel detection)
PHASE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

#: push → ACK on loopback is ~1-20 ms; a slow or overloaded sidecar takes seconds
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class GroupSample:
    """One master group as the service sees it right now."""

    name: str
    primary: str | None
    health: str
    agreeing: int
    sentinels: int
    #: replicas a failover could promote now (not drained; see docs/sentinel.md)
    promotable: int = 0
    #: Sentinels whose view of the group differs from the majority's (reported dissent)
    dissenting: tuple[str, ...] = ()


@dataclass(frozen=True)
class SentinelSample:
    address: str
    reachable: bool
    tilt: bool = False


@dataclass(frozen=True)
class StateSample:
    """What the scrape-time gauges show; built by the service on every scrape."""

    ready: bool
    sidecars_by_protocol: dict[str, int] = field(default_factory=dict)
    groups: Sequence[GroupSample] = ()
    sentinels: Sequence[SentinelSample] = ()
    #: (short type name, SyncState value) → number of sidecars in that state
    sidecar_states: dict[tuple[str, str], int] = field(default_factory=dict)


class _StateCollector(Collector):
    def __init__(self, sample: Callable[[], StateSample]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        s = self._sample()
        ready = GaugeMetricFamily(
            f"{PREFIX}_ready", "1 when serving a snapshot and a majority of Sentinels answer"
        )
        ready.add_metric([], 1.0 if s.ready else 0.0)
        yield ready
        sidecars = GaugeMetricFamily(
            f"{PREFIX}_connected_sidecars", "Open ADS streams", labels=["protocol"]
        )
        for protocol in sorted({"sotw", "delta", *s.sidecars_by_protocol}):
            sidecars.add_metric([protocol], float(s.sidecars_by_protocol.get(protocol, 0)))
        yield sidecars
        states = GaugeMetricFamily(
            f"{PREFIX}_sidecars",
            "Sidecars by resource type and sync state of the latest version",
            labels=["type", "state"],
        )
        for kind in TYPES:
            for state in SIDECAR_STATES:
                states.add_metric([kind, state], float(s.sidecar_states.get((kind, state), 0)))
        yield states
        primary = InfoMetricFamily(
            f"{PREFIX}_group_primary",
            "The primary each group's sidecars are sent to",
            labels=["group"],
        )
        degraded = GaugeMetricFamily(
            f"{PREFIX}_group_degraded",
            "1 when the Sentinels do not agree on the group's primary now",
            labels=["group"],
        )
        agreeing = GaugeMetricFamily(
            f"{PREFIX}_group_agreeing_sentinels",
            "Sentinels that confirm the group's current primary",
            labels=["group"],
        )
        promotable = GaugeMetricFamily(
            f"{PREFIX}_group_promotable_replicas",
            "Replicas Sentinel could promote now without losing data (not drained)",
            labels=["group"],
        )
        for g in s.groups:
            promotable.add_metric([g.name], float(g.promotable))
            primary.add_metric([g.name], {"primary": g.primary or ""})
            degraded.add_metric([g.name], 0.0 if g.health == "ok" else 1.0)
            agreeing.add_metric([g.name], float(g.agreeing))
        yield primary
        yield degraded
        yield agreeing
        yield promotable
        up = GaugeMetricFamily(
            f"{PREFIX}_sentinel_up",
            "1 when the Sentinel answered the last poll",
            labels=["sentinel"],
        )
        tilt = GaugeMetricFamily(
            f"{PREFIX}_sentinel_tilt", "1 when the Sentinel reports TILT mode", labels=["sentinel"]
        )
        for sentinel in s.sentinels:
            up.add_metric([sentinel.address], 1.0 if sentinel.reachable else 0.0)
            tilt.add_metric([sentinel.address], 1.0 if sentinel.tilt else 0.0)
        yield up
        yield tilt
        dissent = GaugeMetricFamily(
            f"{PREFIX}_sentinel_dissent",
            "1 when the Sentinel's view of the group (primary, epoch, TILT) differs from the "
            "majority's",
            labels=["group", "sentinel"],
        )
        for g in s.groups:
            for sentinel in s.sentinels:
                dissent.add_metric(
                    [g.name, sentinel.address], 1.0 if sentinel.address in g.dissenting else 0.0
                )
        yield dissent


class Metrics:
    """The registry and every event metric; implements :class:`~xds.ads.sidecars.XdsObserver`."""

    def __init__(self, version: str = "unknown") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # RSS and CPU: the budgets in docs/xds.md
        build = Gauge(
            f"{PREFIX}_build_info",
            "Always 1; the running version in the label",
            ["version"],
            registry=self.registry,
        )
        build.labels(version).set(1)
        self.reloads = Counter(
            f"{PREFIX}_config_reloads",
            "SIGHUP reloads of the config, secrets and certificates, by result",
            ["result"],
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self.failover_phases = Histogram(
            f"{PREFIX}_failover_phase_seconds",
            "Failover phases, measured from the failover's first sign",
            ["phase", "trigger"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.pushes = Counter(
            f"{PREFIX}_pushes",
            "xDS responses sent to sidecars",
            ["type"],
            registry=self.registry,
        )
        self.acks = Counter(
            f"{PREFIX}_acks", "ACKs received from sidecars", ["type"], registry=self.registry
        )
        self.nacks = Counter(
            f"{PREFIX}_nacks",
            "NACKs (rejected resources) received from sidecars",
            ["type"],
            registry=self.registry,
        )
        self.push_to_ack = Histogram(
            f"{PREFIX}_push_to_ack_seconds",
            "Time from sending a response to the sidecar's ACK of it",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.failovers = Counter(
            f"{PREFIX}_failovers",
            "Primary changes followed to the last sidecar ACK, by what started them",
            ["trigger"],
            registry=self.registry,
        )
        self.streams_refused = Counter(
            f"{PREFIX}_streams_refused",
            "ADS streams refused or closed early, by reason: xds.max_streams, "
            "xds.max_streams_per_peer, xds.first_request_timeout_s, node_limits",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS:  # present from the first scrape, at zero
            self.streams_refused.labels(reason)
        self.loop_stalls = Counter(
            f"{PREFIX}_event_loop_stalls",
            "Times the event loop did not run for more than the watchdog threshold (250 ms)",
            registry=self.registry,
        )
        self.rate_limited_requests = Counter(
            f"{PREFIX}_rate_limited_requests",
            "ADS requests delayed by the per-stream limit xds.max_requests_per_second",
            registry=self.registry,
        )
        for t in TYPES:  # present from the first scrape, at zero
            self.pushes.labels(t)
            self.acks.labels(t)
            self.nacks.labels(t)
            self.push_to_ack.labels(t)
        for trigger in TRIGGERS:
            self.failovers.labels(trigger)

    def add_state(self, sample: Callable[[], StateSample]) -> None:
        """Register the scrape-time gauges (once per service)."""
        self.registry.register(_StateCollector(sample))

    # XdsObserver ------------------------------------------------------------------

    def pushed(self, type_url: str) -> None:
        self.pushes.labels(short_type(type_url)).inc()

    def acked(self, type_url: str, latency_s: float | None) -> None:
        kind = short_type(type_url)
        self.acks.labels(kind).inc()
        if latency_s is not None:
            self.push_to_ack.labels(kind).observe(latency_s)

    def nacked(self, type_url: str) -> None:
        self.nacks.labels(short_type(type_url)).inc()

    def stream_refused(self, reason: str = "max_streams") -> None:
        self.streams_refused.labels(reason).inc()

    def loop_stalled(self, seconds: float) -> None:
        """The watchdog saw the event loop stall (:mod:`xds.service.watchdog`)."""
        self.loop_stalls.inc()

    def rate_limited(self) -> None:
        self.rate_limited_requests.inc()

    # timeline ---------------------------------------------------------------------

    def failover_completed(
        self, trigger: str, phases_ms: Mapping[str, float | None] | None = None
    ) -> None:
        self.failovers.labels(trigger).inc()
        for phase, ms in (phases_ms or {}).items():
            if ms is not None and phase in PHASES:
                self.failover_phases.labels(phase, trigger).observe(ms / 1000.0)

    def render(self) -> bytes:
        """The text exposition format (``Content-Type``: :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
