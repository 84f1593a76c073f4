"""The one I/O seam of the watcher: asking Sentinels and Redis nodes.

:class:`SentinelIO` is the narrow interface the watcher depends on;
:class:`RedisSentinelIO` implements it with redis-py's asyncio client and
:class:`redis_sentinel_watch.fake.FakeSentinelIO` implements it in memory for
unit tests. Nothing above this module imports redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .errors import ReplyError, UnreachableError, map_redis_errors
from .model import Address, GroupView, SentinelView
from .replies import SentinelEvent, parse_event, parse_master, parse_replicas

__all__ = ["EVENT_CHANNELS", "RedisSentinelIO", "SentinelIO"]

#: Sentinel pub/sub channels that hint the topology may have changed. They are
#: triggers only: the watcher always re-polls and decides from the poll.
EVENT_CHANNELS: tuple[str, ...] = (
    "+switch-master",
    "+selected-slave",
    "+failover-state-select-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+failover-state-reconf-slaves",
    "+promoted-slave",
    "+failover-end",
    "+failover-end-for-timeout",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
    "+try-failover",
    "+elected-leader",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+convert-to-slave",
    "+reboot",
    "+tilt",
    "-tilt",
    "+config-update-from",
    "+new-epoch",
    "+slave",
    "+sentinel",
)


class SentinelIO(Protocol):
    """What the watcher needs from the outside world."""

    async def query(self, sentinel: Address, groups: Sequence[str]) -> SentinelView:
        """Ask one Sentinel about ``groups``. Never raises: failures become
        ``SentinelView(reachable=False, error=...)``; a malformed group entry is
        dropped and named in ``error``."""
        ...

    async def role(self, node: Address) -> str:
        """The node's own ``ROLE`` (``master``/``slave``), or ``""`` if it cannot be asked."""
        ...

    def events(self, sentinel: Address) -> AsyncIterator[SentinelEvent]:
        """Pub/sub events from one Sentinel; raises :class:`UnreachableError` when the
        connection fails (the watcher reconnects with backoff)."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class RedisSentinelIO:
    """:class:`SentinelIO` over redis-py's asyncio client (RESP2, short timeouts)."""

    def __init__(self, timeout_s: float = 0.5) -> None:
        self._timeout = timeout_s
        self._clients: dict[Address, aioredis.Redis] = {}

    def _client(self, addr: Address) -> aioredis.Redis:
        client = self._clients.get(addr)
        if client is None:
            client = aioredis.Redis(
                host=addr.host,
                port=addr.port,
                protocol=2,
                decode_responses=True,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
                # redis-py 8 retries 10 times by default: a frozen Sentinel would then
                # take seconds to count as down. One try; the watcher's loop retries.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            self._clients[addr] = client
        return client

    async def query(self, sentinel: Address, groups: Sequence[str]) -> SentinelView:
        client = self._client(sentinel)
        try:
            with map_redis_errors(f"sentinel {sentinel}"):
                masters = await asyncio.wait_for(
                    client.execute_command("SENTINEL", "MASTERS"), self._timeout * 2
                )
                info = await asyncio.wait_for(client.info("sentinel"), self._timeout * 2)
        except (UnreachableError, ReplyError) as exc:
            return SentinelView(sentinel=sentinel, reachable=False, error=str(exc))
        tilt = str(info.get("sentinel_tilt", "0")) == "1"
        wanted = set(groups)
        views: dict[str, GroupView] = {}
        problems: list[str] = []
        if not isinstance(masters, list):
            return SentinelView(
                sentinel,
                reachable=True,
                tilt=tilt,
                error=f"SENTINEL MASTERS: expected a list, got {type(masters).__name__}",
            )
        for entry in masters:
            try:
                view = parse_master(entry)
            except ReplyError as exc:
                problems.append(str(exc))
                continue
            if view.group not in wanted:
                continue
            try:
                with map_redis_errors(f"sentinel {sentinel}"):
                    raw = await asyncio.wait_for(
                        client.execute_command("SENTINEL", "REPLICAS", view.group),
                        self._timeout * 2,
                    )
                replicas = parse_replicas(raw, view.group)
            except (UnreachableError, ReplyError) as exc:
                problems.append(str(exc))
                replicas = ()
            views[view.group] = GroupView(
                group=view.group,
                primary=view.primary,
                config_epoch=view.config_epoch,
                replicas=replicas,
                primary_down=view.primary_down,
                failover_in_progress=view.failover_in_progress,
            )
        return SentinelView(
            sentinel=sentinel,
            reachable=True,
            groups=views,
            tilt=tilt,
            error="; ".join(problems) or None,
        )

    async def role(self, node: Address) -> str:
        try:
            with map_redis_errors(f"redis {node}"):
                reply = await asyncio.wait_for(
                    self._client(node).execute_command("ROLE"), self._timeout * 2
                )
        except (UnreachableError, ReplyError):
            return ""
        if isinstance(reply, list | tuple) and reply and isinstance(reply[0], str):
            return reply[0]
        return ""

    async def events(self, sentinel: Address) -> AsyncIterator[SentinelEvent]:
        client = aioredis.Redis(
            host=sentinel.host,
            port=sentinel.port,
            protocol=2,
            decode_responses=True,
            socket_connect_timeout=self._timeout,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            with map_redis_errors(f"sentinel {sentinel}"):
                await pubsub.subscribe(*EVENT_CHANNELS)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    yield parse_event(sentinel, str(message["channel"]), str(message["data"]))
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
