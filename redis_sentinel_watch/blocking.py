"""Blocking Redis clients, for the local lab and its tests (one place builds them).

The lab (:mod:`xds.lab`) starts real servers and polls them from plain threads,
so it needs synchronous clients; only this package may import redis-py, so
they are built here, with the defaults the async seam uses: RESP2 (Envoy's
``redis_proxy`` speaks nothing else), decoded strings, and no retries (redis-py
retries by default, which turns "is this node dead?" into a multi-second
question). Failures leave as this package's :mod:`.errors`, never as redis-py's.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import map_redis_errors
from .model import Address

__all__ = ["SingleConnection", "SyncClient", "command", "connect"]

#: What :func:`connect` returns (redis-py's client; callers may use its whole API).
SyncClient: TypeAlias = redis.Redis


def connect(address: Address, timeout_s: float = 2.0, **options: Any) -> SyncClient:
    """A new client for ``address``; ``options`` override redis-py's arguments
    (``password``, ``username``, ``ssl…``, ``socket_timeout`` …). The caller closes it."""
    settings: dict[str, Any] = {
        "protocol": 2,
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    settings.update(options)
    return redis.Redis(host=address.host, port=address.port, **settings)


def command(client: SyncClient, *args: str) -> Any:
    """Run one command; :class:`~.errors.ReplyError` / :class:`~.errors.UnreachableError`."""
    kwargs = client.get_connection_kwargs()
    with map_redis_errors(f"{kwargs.get('host')}:{kwargs.get('port')}"):
        return client.execute_command(*args)  # type: ignore[no-untyped-call]


class SingleConnection:
    """ONE connection, never re-opened behind the caller's back (unlike a client's pool).

    For a client that must notice when its connection is closed, e.g. the demo's
    writer proving that a failover keeps the application's connection to its sidecar.
    """

    def __init__(self, address: Address, timeout_s: float = 10.0) -> None:
        self._target = f"{address}"
        self._conn = redis.Connection(  # type: ignore[no-untyped-call]
            host=address.host, port=address.port, protocol=2, socket_timeout=timeout_s, retry=None
        )
        with map_redis_errors(self._target):
            self._conn.connect()  # type: ignore[no-untyped-call]

    def command(self, *args: str) -> Any:
        """Send one command and read its reply (bytes are decoded)."""
        with map_redis_errors(self._target):
            self._conn.send_command(*args)  # type: ignore[no-untyped-call]
            reply = self._conn.read_response()
        return reply.decode() if isinstance(reply, bytes) else reply

    def close(self) -> None:
        self._conn.disconnect()  # type: ignore[no-untyped-call]
