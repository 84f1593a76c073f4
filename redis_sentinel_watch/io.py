"""The one I/O seam to Sentinels and Redis nodes, for the watcher and for ``drain``.

:class:`SentinelIO` is the narrow interface the watcher and the drain depend
on; :class:`redis_sentinel_watch.redis_io.RedisSentinelIO` implements it with
redis-py's asyncio client and :class:`redis_sentinel_watch.fake.FakeSentinelIO`
in memory for unit tests. Every reply goes through the strict parsers of
:mod:`.replies` and every failure becomes one of :mod:`.errors`, so a caller
never sees redis-py. This module holds only the interface (it loads no redis),
so the watcher and its helpers can depend on it cheaply; the implementation is
split by job: the connections (:mod:`.redis_clients`), the watcher's commands
(:mod:`.watch_commands`), the drain's commands (:mod:`.drain_commands`), and
the host-name cache (:mod:`.resolver`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .auth import Credentials, TlsSettings
from .model import Address, ReplicaEntry, SentinelView
from .replies import MasterStatus, ReplicationInfo, SentinelEvent

__all__ = ["EVENT_CHANNELS", "PERMISSION_PROBE_GROUP", "SentinelIO"]

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
        """``INFO replication``: role, offset, and for a replica its primary (resolved),
        link and whether a full sync is under way. The watcher asks it too (whether
        each replica is synced, :mod:`.replica_sync`) and catches what it raises."""
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
