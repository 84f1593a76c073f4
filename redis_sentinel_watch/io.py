"""The one I/O seam of the watcher: asking Sentinels and Redis nodes.

:class:`SentinelIO` is the narrow interface the watcher depends on;
:class:`RedisSentinelIO` implements it with redis-py's asyncio client and
:class:`redis_sentinel_watch.fake.FakeSentinelIO` implements it in memory for
unit tests. Nothing above this module imports redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .auth import Credentials, TlsSettings
from .errors import ReplyError, UnreachableError, map_redis_errors
from .model import Address, GroupView, SentinelView
from .replies import (
    SentinelEvent,
    drained_replicas,
    parse_event,
    parse_master,
    parse_replicas,
    parse_sentinels,
    promoted_replica,
)

__all__ = ["EVENT_CHANNELS", "HostResolver", "RedisSentinelIO", "SentinelIO"]

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

    async def pause_writes(self, node: Address, ms: int) -> str:
        """``CLIENT PAUSE ms WRITE`` on a Redis node; ``""`` on success, else why not."""
        ...

    async def unpause_writes(self, node: Address) -> str:
        """``CLIENT UNPAUSE``; ``""`` on success, else why not."""
        ...

    async def peers(self, sentinel: Address, group: str) -> tuple[Address, ...] | None:
        """``SENTINEL SENTINELS group``: the other Sentinels this one knows (None on error)."""
        ...

    def events(self, sentinel: Address) -> AsyncIterator[SentinelEvent]:
        """Pub/sub events from one Sentinel; raises :class:`UnreachableError` when the
        connection fails (the watcher reconnects with backoff)."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class HostResolver:
    """Turns host names into IP addresses, caching each answer for ``ttl_s``.

    With ``announce-hostnames yes`` Sentinel reports names instead of IPs, but
    Envoy's EDS endpoints must be IP addresses, and two Sentinels naming the
    same node differently must still agree. So every address leaves this
    module resolved; IP literals pass through untouched.
    """

    def __init__(self, ttl_s: float = 1.0) -> None:
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    async def resolve(self, addr: Address) -> Address:
        """``addr`` with its host resolved; :class:`ReplyError` if the name does not resolve."""
        try:
            ipaddress.ip_address(addr.host)
        except ValueError:
            pass
        else:
            return addr
        now = time.monotonic()
        cached = self._cache.get(addr.host)
        if cached is not None and now - cached[0] < self._ttl:
            return Address(cached[1], addr.port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                addr.host, addr.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise ReplyError(f"cannot resolve host {addr.host!r}: {exc.strerror or exc}") from exc
        if not infos:
            raise ReplyError(f"cannot resolve host {addr.host!r}: no address")
        # Prefer IPv4: Debian's /etc/hosts maps "localhost" to ::1 as well, and Redis
        # usually listens on IPv4 only; an IPv6-only name still resolves.
        v4 = [i for i in infos if i[0] == socket.AF_INET]
        ip = str((v4 or infos)[0][4][0])
        self._cache[addr.host] = (now, ip)
        return Address(ip, addr.port)

    async def view(self, view: GroupView) -> GroupView:
        """A :class:`GroupView` with every address resolved."""
        return dataclasses.replace(
            view,
            primary=await self.resolve(view.primary),
            replicas=tuple(sorted([await self.resolve(r) for r in view.replicas])),
            drained=tuple(sorted([await self.resolve(r) for r in view.drained])),
            promoted=await self.resolve(view.promoted) if view.promoted else None,
        )

    async def event(self, event: SentinelEvent) -> SentinelEvent:
        """An event with its addresses resolved where possible (left as given otherwise)."""
        return dataclasses.replace(
            event,
            instance=await self._maybe(event.instance),
            master=await self._maybe(event.master),
        )

    async def _maybe(self, addr: Address | None) -> Address | None:
        if addr is None:
            return None
        try:
            return await self.resolve(addr)
        except ReplyError:
            return addr


class RedisSentinelIO:
    """:class:`SentinelIO` over redis-py's asyncio client (RESP2, short timeouts).

    ``sentinel_auth`` authenticates to Sentinels, ``redis_auth`` to the Redis
    nodes (for ``ROLE`` and fencing); ``tls`` applies to both.
    """

    def __init__(
        self,
        timeout_s: float = 0.5,
        *,
        sentinel_auth: Credentials | None = None,
        redis_auth: Credentials | None = None,
        tls: TlsSettings | None = None,
        resolver: HostResolver | None = None,
    ) -> None:
        self._timeout = timeout_s
        self._sentinel_auth = sentinel_auth
        self._redis_auth = redis_auth
        self._tls = tls
        self._resolver = resolver or HostResolver()
        self._sentinels: dict[Address, aioredis.Redis] = {}
        self._nodes: dict[Address, aioredis.Redis] = {}

    def _options(self, auth: Credentials | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if auth is not None:
            options.update(auth.client_options())
        if self._tls is not None:
            options.update(self._tls.client_options())
        return options

    def _make(self, addr: Address, auth: Credentials | None, **overrides: Any) -> aioredis.Redis:
        options: dict[str, Any] = {
            "host": addr.host,
            "port": addr.port,
            "protocol": 2,
            "decode_responses": True,
            "socket_timeout": self._timeout,
            "socket_connect_timeout": self._timeout,
            # redis-py 8 retries 10 times by default: a frozen Sentinel would then
            # take seconds to count as down. One try; the watcher's loop retries.
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        options.update(self._options(auth))
        options.update(overrides)
        return aioredis.Redis(**options)

    def _client(self, addr: Address) -> aioredis.Redis:
        """A cached client for a Sentinel."""
        client = self._sentinels.get(addr)
        if client is None:
            client = self._sentinels[addr] = self._make(addr, self._sentinel_auth)
        return client

    def _node(self, addr: Address) -> aioredis.Redis:
        """A cached client for a Redis node (its own credentials)."""
        client = self._nodes.get(addr)
        if client is None:
            client = self._nodes[addr] = self._make(addr, self._redis_auth)
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
                # Still reported (without asking further), so the watcher can warn once.
                views[view.group] = view
                continue
            try:
                with map_redis_errors(f"sentinel {sentinel}"):
                    raw = await asyncio.wait_for(
                        client.execute_command("SENTINEL", "REPLICAS", view.group),
                        self._timeout * 2,
                    )
                view = dataclasses.replace(
                    view,
                    replicas=parse_replicas(raw, view.group),
                    drained=drained_replicas(raw, view.group),
                    promoted=promoted_replica(raw, view.group),
                )
            except (UnreachableError, ReplyError) as exc:
                problems.append(str(exc))
            try:
                views[view.group] = await self._resolver.view(view)
            except ReplyError as exc:
                problems.append(f"SENTINEL MASTERS {view.group}: {exc}")
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
                    self._node(node).execute_command("ROLE"), self._timeout * 2
                )
        except (UnreachableError, ReplyError):
            return ""
        if isinstance(reply, list | tuple) and reply and isinstance(reply[0], str):
            return reply[0]
        return ""

    async def _admin(self, node: Address, *command: str) -> str:
        try:
            with map_redis_errors(f"redis {node}"):
                await asyncio.wait_for(
                    self._node(node).execute_command(*command), self._timeout * 2
                )
        except (UnreachableError, ReplyError) as exc:
            return str(exc)
        return ""

    async def pause_writes(self, node: Address, ms: int) -> str:
        return await self._admin(node, "CLIENT", "PAUSE", str(ms), "WRITE")

    async def peers(self, sentinel: Address, group: str) -> tuple[Address, ...] | None:
        try:
            with map_redis_errors(f"sentinel {sentinel}"):
                raw = await asyncio.wait_for(
                    self._client(sentinel).execute_command("SENTINEL", "SENTINELS", group),
                    self._timeout * 2,
                )
            found = parse_sentinels(raw, group)
            return tuple(sorted([await self._resolver.resolve(a) for a in found]))
        except (UnreachableError, ReplyError):
            return None

    async def unpause_writes(self, node: Address) -> str:
        return await self._admin(node, "CLIENT", "UNPAUSE")

    async def events(self, sentinel: Address) -> AsyncIterator[SentinelEvent]:
        client = self._make(sentinel, self._sentinel_auth, socket_timeout=None)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            with map_redis_errors(f"sentinel {sentinel}"):
                await pubsub.subscribe(*EVENT_CHANNELS)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    event = parse_event(sentinel, str(message["channel"]), str(message["data"]))
                    yield await self._resolver.event(event)
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def aclose(self) -> None:
        clients = [*self._sentinels.values(), *self._nodes.values()]
        self._sentinels, self._nodes = {}, {}
        for client in clients:
            await client.aclose()
