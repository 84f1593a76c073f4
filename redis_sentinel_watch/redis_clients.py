"""Connections to Sentinels and Redis nodes: settings, one cached client per address.

The base of :class:`redis_sentinel_watch.redis_io.RedisSentinelIO`: the
commands (:mod:`.watch_commands`, :mod:`.drain_commands`) ask through
:meth:`RedisClients._ask_sentinel` / :meth:`RedisClients._ask_node` or the
cached clients, and never build a redis-py client themselves, so timeouts,
AUTH, TLS and the no-retry policy are decided here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .auth import Credentials, TlsSettings
from .errors import acl_name, map_redis_errors
from .model import Address
from .resolver import HostResolver

__all__ = ["RedisClients"]


class RedisClients:
    """redis-py asyncio clients (RESP2, short timeouts, no retries), cached per address.

    ``sentinel_auth`` authenticates to Sentinels, ``redis_auth`` to the Redis
    nodes (for ``ROLE``, fencing and the drain); ``tls`` applies to both.
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
        Pub/sub connections (``events``) stay up; they use the new settings
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

    async def _ask_sentinel(self, sentinel: Address, *command: str) -> Any:
        """One command to a Sentinel; failures raise, a denied command names the user."""
        who = f"sentinel user '{self._user(self._sentinel_auth)}' on {sentinel}"
        with map_redis_errors(f"sentinel {sentinel}", who, acl_name(command)):
            return await asyncio.wait_for(
                self._client(sentinel).execute_command(*command), self._timeout * 2
            )

    async def _ask_node(self, node: Address, *command: str) -> Any:
        """One command to a Redis node; failures raise, a denied command names the user."""
        who = f"redis user '{self._user(self._redis_auth)}' on {node}"
        with map_redis_errors(f"redis {node}", who, acl_name(command)):
            return await asyncio.wait_for(
                self._node(node).execute_command(*command), self._timeout * 2
            )

    async def aclose(self) -> None:
        """Close every cached client, the retired ones too."""
        clients = [*self._sentinels.values(), *self._nodes.values()]
        self._sentinels, self._nodes = {}, {}
        for task in list(self._retiring):  # closes the retired clients now
            task.cancel()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for client in clients:
            await client.aclose()
