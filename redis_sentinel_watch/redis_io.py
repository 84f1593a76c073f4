"""The real :class:`~redis_sentinel_watch.io.SentinelIO`: redis-py's asyncio client.

One class for the one seam, assembled from its jobs: the connections
(:class:`.redis_clients.RedisClients`), the watcher's commands
(:class:`.watch_commands.WatchCommands`) and the drain's
(:class:`.drain_commands.DrainCommands`). Nothing outside this package imports
redis.
"""

from __future__ import annotations

from .drain_commands import DrainCommands
from .watch_commands import WatchCommands

__all__ = ["RedisSentinelIO"]


class RedisSentinelIO(WatchCommands, DrainCommands):
    """:class:`~redis_sentinel_watch.io.SentinelIO` over redis-py (RESP2, short timeouts).

    ``sentinel_auth`` authenticates to Sentinels, ``redis_auth`` to the Redis
    nodes (for ``ROLE``, fencing, replica sync checks and the drain); ``tls``
    applies to both.
    """

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
