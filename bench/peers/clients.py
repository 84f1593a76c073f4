# mypy: disallow-untyped-calls=False
# (redis-py leaves Connection, Sentinel and execute_command unannotated)
"""The three ways an application reaches Redis in the comparison, behind one small interface.

Every column's writer calls :meth:`Client.set` every 10 ms and only sees what an
application would see: ``OK`` or an exception. Each client counts the TCP
connections it had to open, because "the application had to reconnect" is one of
the costs being compared.

* :class:`ProxyClient`: a plain Redis connection to a fixed address (the Envoy
  sidecar or HAProxy), re-opened on the next write when the proxy closes it, as a
  pooled application client would;
* :class:`SentinelClient`: redis-py's own ``Sentinel(...).master_for(...)`` with a
  bounded retry policy, the library most Python applications would use.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from redis_sentinel_watch import Address

__all__ = ["SENTINEL_CLIENT_SETTINGS", "Client", "ProxyClient", "SentinelClient"]

#: What an application would configure; recorded with the results.
SENTINEL_CLIENT_SETTINGS: dict[str, Any] = {
    "socket_timeout_s": 2.0,
    "socket_connect_timeout_s": 0.5,
    "sentinel_socket_timeout_s": 0.5,
    "retry": "Retry(ExponentialBackoff(cap=0.5, base=0.01), retries=6)",
}
PROXY_CLIENT_SETTINGS: dict[str, Any] = {
    "socket_timeout_s": 5.0,
    "socket_connect_timeout_s": 0.5,
    "retry": "none: one attempt per write; after a connection error or READONLY the "
    "next write opens a new connection",
}


class Client(Protocol):
    """What a writer needs from a client."""

    def set(self, key: str, value: str) -> None:
        """Write; raise on anything but ``OK``."""

    @property
    def connections(self) -> int:
        """TCP connections opened so far (1 means it never had to reconnect)."""

    def close(self) -> None: ...


class ProxyClient:
    """One connection to a fixed address; opened again on the next write after a loss."""

    def __init__(self, address: Address, socket_timeout: float = 5.0) -> None:
        self.address = address
        self._timeout = socket_timeout
        self._conn: redis.Connection | None = None
        self._connections = 0

    @property
    def connections(self) -> int:
        return self._connections

    def _connection(self) -> redis.Connection:
        if self._conn is None:
            conn = redis.Connection(
                host=self.address.host,
                port=self.address.port,
                protocol=2,  # Envoy's redis_proxy does not speak RESP3
                socket_timeout=self._timeout,
                socket_connect_timeout=PROXY_CLIENT_SETTINGS["socket_connect_timeout_s"],
                retry=Retry(NoBackoff(), 0),
            )
            conn.connect()  # raises ConnectionError: this write fails, the next one retries
            self._conn = conn
            self._connections += 1
        return self._conn

    def set(self, key: str, value: str) -> None:
        conn = self._connection()
        try:
            conn.send_command("SET", key, value)
            reply = conn.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError):
            # READONLY: we are on a demoted primary (HAProxy keeps an established
            # session on a node its check has since marked down). Reconnect on the next
            # write, as redis-py's own Sentinel client does; otherwise the client
            # would be stuck on the replica for as long as the session lives.
            conn.disconnect()
            self._conn = None
            raise
        if reply not in (b"OK", "OK"):
            raise redis.RedisError(f"unexpected reply {reply!r}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None


class _CountingConnection(SentinelManagedConnection):
    """redis-py's Sentinel-managed connection, counting each successful connect."""

    counter: _Counter

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health=check_health)
        self.counter.bump()


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def bump(self) -> None:
        with self._lock:
            self.value += 1


class SentinelClient:
    """``redis.sentinel.Sentinel(...).master_for(group)`` with a bounded exponential retry."""

    def __init__(self, sentinels: Sequence[Address], group: str) -> None:
        self._counter = _Counter()
        connection_class = type(
            "CountingSentinelConnection", (_CountingConnection,), {"counter": self._counter}
        )
        s = SENTINEL_CLIENT_SETTINGS
        self._sentinel = Sentinel(
            [(a.host, a.port) for a in sentinels],
            sentinel_kwargs={
                "socket_timeout": s["sentinel_socket_timeout_s"],
                "socket_connect_timeout": s["sentinel_socket_timeout_s"],
                "protocol": 2,
            },
        )
        self._client = self._sentinel.master_for(
            group,
            socket_timeout=s["socket_timeout_s"],
            socket_connect_timeout=s["socket_connect_timeout_s"],
            protocol=2,
            retry=Retry(
                ExponentialBackoff(cap=0.5, base=0.01),
                6,
                supported_errors=(RedisConnectionError, RedisTimeoutError, socket.timeout),
            ),
            connection_class=connection_class,
        )

    @property
    def connections(self) -> int:
        return self._counter.value

    def set(self, key: str, value: str) -> None:
        if not self._client.set(key, value):
            raise redis.RedisError("SET did not return OK")

    def close(self) -> None:
        self._client.close()
        for s in self._sentinel.sentinels:
            s.close()
