"""How a :class:`Config` becomes the watcher's parts: its I/O, its watcher, the groups' specs.

Apart from :mod:`xds.service.app` because a reload builds them again (a new
watcher when the Sentinels or groups change) and other commands need the same
I/O (``sentinel-xds drain`` asks the nodes the service watches).
"""

from __future__ import annotations

from redis_sentinel_watch import RedisSentinelIO, SentinelIO, Topology, Watcher
from xds.resources.redis_group import GroupSpec
from xds.service.config import Config

__all__ = ["build_watcher", "group_specs", "sentinel_io"]


def sentinel_io(config: Config) -> RedisSentinelIO:
    """The Sentinel/Redis I/O the config asks for (timeouts, AUTH, TLS)."""
    return RedisSentinelIO(
        config.watch.sentinel_timeout_s,
        sentinel_auth=config.sentinel_auth,
        redis_auth=config.redis_auth,
        tls=config.tls,
    )


def group_specs(config: Config, topology: Topology) -> list[GroupSpec]:
    """What each configured group's resources are built from, with its agreed primary."""
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
        for g in config.groups
    ]


def build_watcher(config: Config, io: SentinelIO, seed: Topology | None = None) -> Watcher:
    """The watcher the config asks for, over ``io`` (starting from ``seed``, see
    :class:`Watcher`)."""
    return Watcher(
        io,
        config.sentinels,
        [g.name for g in config.groups],
        poll_interval_s=config.watch.poll_interval_s,
        role_check=config.watch.role_check,
        react_on_promotion=config.watch.react_on_promotion,
        promotion_probe_interval_s=config.watch.promotion_probe_interval_s,
        fence_pause_ms=config.watch.fence_pause_ms,
        seed=seed,
    )
