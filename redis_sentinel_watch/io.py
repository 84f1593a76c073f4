"""The one I/O seam to Sentinels and Redis nodes, for the watcher and for ``drain``.

:class:`SentinelIO` is the narrow interface the watcher and the drain depend
on; :class:`RedisSentinelIO` implements it with redis-py's asyncio client and
:class:`redis_sentinel_watch.fake.FakeSentinelIO` implements it in memory for
unit tests. Every reply goes through the strict parsers of :mod:`.replies` and
every failure becomes one of :mod:`.errors`, so a caller never sees redis-py.
Nothing above this package imports redis.
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
from .errors import (
    ReplyError,
    UnknownGroupError,
    UnreachableError,
    acl_name,
    map_redis_errors,
)
from .model import Address, GroupView, SentinelView
from .replies import (
    MasterStatus,
    ReplicaEntry,
    ReplicationInfo,
    SentinelEvent,
    drained_replicas,
    parse_config_int,
    parse_event,
    parse_info,
    parse_master,
    parse_master_status,
    parse_replica_entries,
    parse_replicas,
    parse_replication,
    parse_sentinels,
    promoted_replica,
)

__all__ = [
    "EVENT_CHANNELS",
    "PERMISSION_PROBE_GROUP",
    "HostResolver",
    "RedisSentinelIO",
    "SentinelIO",
]

#: A master group name no Sentinel monitors: ``SENTINEL FAILOVER`` on it answers
#: NOPERM if the user lacks the command and "No such master" otherwise, and does nothing.
PERMISSION_PROBE_GROUP = "sentinel-xds-permission-probe-6f1c2b9e0d"

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

    def reconfigure(
        self,
        timeout_s: float,
        *,
        sentinel_auth: Credentials | None,
        redis_auth: Credentials | None,
        tls: TlsSettings | None,
    ) -> None:
        """Use these settings for every connection made from now on (a config reload).

        Connections already open were authenticated with the old settings and
        keep working; calls in flight finish on them. Never raises.
        """
        ...

    # What ``sentinel-xds drain`` / ``undrain`` needs besides the above. Unlike the
    # watcher's methods these raise (UnreachableError, ReplyError and their
    # subclasses): an operator tool stops and says why instead of carrying on.

    async def sentinel_master(self, sentinel: Address, group: str) -> MasterStatus:
        """``SENTINEL MASTER group`` (:class:`UnknownGroupError` if not monitored)."""
        ...

    async def sentinel_replicas(self, sentinel: Address, group: str) -> tuple[ReplicaEntry, ...]:
        """``SENTINEL REPLICAS group``, every replica with flags, priority and link."""
        ...

    async def sentinel_failover(self, sentinel: Address, group: str) -> None:
        """``SENTINEL FAILOVER group``. :class:`TimedOutError` means it may have been acted on."""
        ...

    async def replication(self, node: Address) -> ReplicationInfo:
        """``INFO replication``: role, offset, and for a replica its primary and link."""
        ...

    async def replica_priority(self, node: Address) -> int:
        """``CONFIG GET replica-priority``."""
        ...

    async def config_file(self, node: Address) -> str:
        """``INFO server`` ``config_file`` (``""`` when the node runs without one)."""
        ...

    async def set_replica_priority(self, node: Address, priority: int) -> None:
        """``CONFIG SET replica-priority``."""
        ...

    async def rewrite_config(self, node: Address) -> None:
        """``CONFIG REWRITE``: persist runtime changes to the node's config file."""
        ...

    async def replicaof(self, node: Address, primary: Address) -> None:
        """``REPLICAOF host port``."""
        ...

    async def check_node_permissions(
        self, node: Address, commands: Sequence[Sequence[str]]
    ) -> None:
        """Raise :class:`NoPermissionError` naming the first of ``commands`` the user lacks.

        Nothing is run: the commands are queued inside ``MULTI`` (Redis checks
        ACLs when it queues) and the connection is then closed, which discards
        the transaction. Needs ``+multi``; an arity error is reported as such.
        """
        ...

    async def check_sentinel_failover(self, sentinel: Address) -> None:
        """Raise :class:`NoPermissionError` if the user may not run ``SENTINEL FAILOVER``
        (asked for :data:`PERMISSION_PROBE_GROUP`, which does not exist: nothing happens)."""
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
        self._retiring: set[asyncio.Task[None]] = set()

    def reconfigure(
        self,
        timeout_s: float,
        *,
        sentinel_auth: Credentials | None,
        redis_auth: Credentials | None,
        tls: TlsSettings | None,
    ) -> None:
        """New settings for every client made from now on (see :class:`SentinelIO`).

        The cached clients are dropped at once, so the next poll connects with
        the new password, and closed only after the longest call could take
        (``timeout_s * 2``): closing them now would fail a ROLE check in flight.
        Pub/sub connections (:meth:`events`) stay up; they use the new settings
        when they reconnect.
        """
        old = [*self._sentinels.values(), *self._nodes.values()]
        grace = self._timeout * 2
        self._timeout = timeout_s
        self._sentinel_auth, self._redis_auth, self._tls = sentinel_auth, redis_auth, tls
        self._sentinels, self._nodes = {}, {}
        if old:
            task = asyncio.get_running_loop().create_task(self._retire(old, grace))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(clients: Sequence[aioredis.Redis], after_s: float) -> None:
        try:
            await asyncio.sleep(after_s)
        finally:
            for client in clients:
                await client.aclose()

    def with_timeout(self, timeout_s: float) -> RedisSentinelIO:
        """The same credentials, TLS and resolver with another timeout (own connections).

        ``drain`` asks with a short timeout while writes are paused and a normal
        one otherwise, both built from the one I/O that ``serve`` would build.
        """
        return RedisSentinelIO(
            timeout_s,
            sentinel_auth=self._sentinel_auth,
            redis_auth=self._redis_auth,
            tls=self._tls,
            resolver=self._resolver,
        )

    @staticmethod
    def _user(auth: Credentials | None) -> str:
        return (auth.username if auth is not None and auth.username else None) or "default"

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

    # ------------------------------------------------------------------ drain

    async def _ask_sentinel(self, sentinel: Address, *command: str) -> Any:
        who = f"sentinel user '{self._user(self._sentinel_auth)}' on {sentinel}"
        with map_redis_errors(f"sentinel {sentinel}", who, acl_name(command)):
            return await asyncio.wait_for(
                self._client(sentinel).execute_command(*command), self._timeout * 2
            )

    async def _ask_node(self, node: Address, *command: str) -> Any:
        who = f"redis user '{self._user(self._redis_auth)}' on {node}"
        with map_redis_errors(f"redis {node}", who, acl_name(command)):
            return await asyncio.wait_for(
                self._node(node).execute_command(*command), self._timeout * 2
            )

    async def sentinel_master(self, sentinel: Address, group: str) -> MasterStatus:
        raw = await self._ask_sentinel(sentinel, "SENTINEL", "MASTER", group)
        status = parse_master_status(raw, f"SENTINEL MASTER {group}")
        return dataclasses.replace(status, primary=await self._resolver.resolve(status.primary))

    async def sentinel_replicas(self, sentinel: Address, group: str) -> tuple[ReplicaEntry, ...]:
        raw = await self._ask_sentinel(sentinel, "SENTINEL", "REPLICAS", group)
        return tuple(
            [
                dataclasses.replace(e, address=await self._resolver.resolve(e.address))
                for e in parse_replica_entries(raw, group)
            ]
        )

    async def sentinel_failover(self, sentinel: Address, group: str) -> None:
        await self._ask_sentinel(sentinel, "SENTINEL", "FAILOVER", group)

    async def replication(self, node: Address) -> ReplicationInfo:
        return parse_replication(await self._ask_node(node, "INFO", "replication"), node)

    async def replica_priority(self, node: Address) -> int:
        raw = await self._ask_node(node, "CONFIG", "GET", "replica-priority")
        return parse_config_int(raw, "replica-priority", node)

    async def config_file(self, node: Address) -> str:
        raw = await self._ask_node(node, "INFO", "server")
        return parse_info(raw, f"INFO server of {node}").get("config_file", "")

    async def set_replica_priority(self, node: Address, priority: int) -> None:
        await self._ask_node(node, "CONFIG", "SET", "replica-priority", str(priority))

    async def rewrite_config(self, node: Address) -> None:
        await self._ask_node(node, "CONFIG", "REWRITE")

    async def replicaof(self, node: Address, primary: Address) -> None:
        await self._ask_node(node, "REPLICAOF", primary.host, str(primary.port))

    async def check_node_permissions(
        self, node: Address, commands: Sequence[Sequence[str]]
    ) -> None:
        who = f"redis user '{self._user(self._redis_auth)}' on {node}"
        # A connection of its own, never returned to a pool: closing it is what
        # discards the transaction, so no command can run even if DISCARD is denied.
        client = self._make(node, self._redis_auth)
        connection = await client.connection_pool.get_connection()
        try:
            with map_redis_errors(f"redis {node}", who, "multi"):
                await asyncio.wait_for(self._queue(connection, ("MULTI",)), self._timeout * 2)
            for command in commands:
                with map_redis_errors(f"redis {node}", who, acl_name(command)):
                    reply = await asyncio.wait_for(
                        self._queue(connection, tuple(command)), self._timeout * 2
                    )
                if reply != "QUEUED":  # MULTI was not in effect: stop before anything runs
                    raise ReplyError(f"redis {node}: {' '.join(command[:2])} answered {reply!r}")
        finally:
            await connection.disconnect()
            await client.connection_pool.release(connection)
            await client.aclose()

    @staticmethod
    async def _queue(connection: Any, command: tuple[str, ...]) -> Any:
        await connection.send_command(*command)
        return await connection.read_response()

    async def check_sentinel_failover(self, sentinel: Address) -> None:
        try:
            await self._ask_sentinel(sentinel, "SENTINEL", "FAILOVER", PERMISSION_PROBE_GROUP)
        except UnknownGroupError:
            return  # allowed (and nothing happened); NoPermissionError propagates

    async def aclose(self) -> None:
        clients = [*self._sentinels.values(), *self._nodes.values()]
        self._sentinels, self._nodes = {}, {}
        for task in list(self._retiring):  # closes the retired clients now
            task.cancel()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for client in clients:
            await client.aclose()
