"""A whole Sentinel topology on loopback: per group a primary and replicas, N Sentinels.

Tests and benchmarks need "a Redis setup Sentinel has fully discovered" and
"the primary a Sentinel majority names right now" far more often than single
servers; :class:`SentinelCluster` starts :class:`~xds.lab.redis.RedisNode` and
:class:`~xds.lab.sentinel.SentinelNode` processes in the right order, waits
until every Sentinel knows every replica and peer, answers those questions
with polls bounded by deadlines, and stops everything (also as a context
manager, and when its own start fails half-way).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from redis_sentinel_watch.blocking import command
from redis_sentinel_watch.errors import WatchError
from redis_sentinel_watch.model import Address
from xds.lab.process import wait_until
from xds.lab.redis import RedisNode
from xds.lab.sentinel import SentinelNode
from xds.lab.server import POLL_TIMEOUT

__all__ = ["SentinelCluster"]


def _entry_address(entry: dict[str, str]) -> Address | None:
    try:
        return Address(entry["ip"], int(entry["port"]))
    except (KeyError, ValueError):
        return None


class SentinelCluster:
    """Per group one primary and its replica(s), plus N Sentinels watching every group.

    ``primaries`` and ``replicas`` record the *initial* layout; after a failover ask
    :meth:`current_primary`. Use as a context manager (or call :meth:`stop`) so every
    process is stopped even when the block raises.
    """

    def __init__(
        self,
        workdir: Path,
        groups: Sequence[str],
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> None:
        self.workdir: Path = workdir
        self.groups: tuple[str, ...] = tuple(groups)
        self.quorum: int = quorum
        self.down_after_ms: int = down_after_ms
        self.failover_timeout_ms: int = failover_timeout_ms
        self.primaries: dict[str, RedisNode] = {}
        self.replicas: dict[str, list[RedisNode]] = {}
        self.sentinels: list[SentinelNode] = []

    @classmethod
    def start(
        cls,
        workdir: Path,
        groups: Sequence[str] = ("mymaster",),
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10000,
        *,
        replicas_per_group: int = 1,
        timeout: float = 30.0,
        redis_conf: Sequence[str] = (),
        redis_client_options: Mapping[str, Any] | None = None,
        sentinel_conf: Sequence[str] = (),
        sentinel_group_conf: Sequence[str] = (),
        sentinel_client_options: Mapping[str, Any] | None = None,
    ) -> SentinelCluster:
        """Start everything and wait until every Sentinel knows every replica and peer.

        ``redis_conf`` / ``sentinel_conf`` / ``sentinel_group_conf`` are the
        ``extra_conf`` / ``group_conf`` of every :class:`RedisNode` / :class:`SentinelNode`
        (passwords and ACL users: ``requirepass``, ``masterauth``, ``user …``,
        ``sentinel auth-pass {group} …``), and the ``*_client_options`` what the
        lab's own clients then need to talk to them.

        On any failure (including KeyboardInterrupt) everything already started is
        stopped before the exception propagates.
        """
        if not groups:
            raise ValueError("at least one group is required")
        if sentinels < 1 or not 1 <= quorum <= sentinels:
            raise ValueError(f"need 1 <= quorum ({quorum}) <= sentinels ({sentinels})")
        cluster = cls(workdir, groups, quorum, down_after_ms, failover_timeout_ms)
        try:
            for group in cluster.groups:
                primary = RedisNode.start(
                    workdir, extra_conf=redis_conf, client_options=redis_client_options
                )
                cluster.primaries[group] = primary
                cluster.replicas[group] = [
                    RedisNode.start(
                        workdir,
                        replica_of=primary.address,
                        extra_conf=redis_conf,
                        client_options=redis_client_options,
                    )
                    for _ in range(replicas_per_group)
                ]
            for group_replicas in cluster.replicas.values():
                for replica in group_replicas:
                    replica.wait_replica_synced(timeout)
            monitors = [(g, cluster.primaries[g].address) for g in cluster.groups]
            for _ in range(sentinels):
                cluster.sentinels.append(
                    SentinelNode.start(
                        workdir,
                        monitors=monitors,
                        quorum=quorum,
                        down_after_ms=down_after_ms,
                        failover_timeout_ms=failover_timeout_ms,
                        extra_conf=sentinel_conf,
                        group_conf=sentinel_group_conf,
                        client_options=sentinel_client_options,
                    )
                )
            cluster.wait_discovered(timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"<SentinelCluster groups={list(self.groups)} redis={len(self.nodes)} "
            f"sentinels={len(self.sentinels)}>"
        )

    @property
    def nodes(self) -> list[RedisNode]:
        """Every Redis node (primaries and replicas of all groups)."""
        out: list[RedisNode] = []
        for group in self.groups:
            if group in self.primaries:
                out.append(self.primaries[group])
            out.extend(self.replicas.get(group, []))
        return out

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    @property
    def majority(self) -> int:
        return len(self.sentinels) // 2 + 1

    def node(self, address: Address) -> RedisNode:
        """The Redis node listening on ``address`` (KeyError if not ours)."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def _discovered(self) -> bool:
        peers = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            for group in self.groups:
                expected = {r.address for r in self.replicas.get(group, [])}
                healthy = {
                    addr
                    for entry in sentinel.known_replicas(group)
                    if (addr := _entry_address(entry)) is not None
                    and "s_down" not in entry.get("flags", "")
                    and "disconnected" not in entry.get("flags", "")
                }
                if not expected <= healthy:
                    return False
                if len(sentinel.known_sentinels(group)) < peers:
                    return False
        return True

    def wait_discovered(self, timeout: float = 30.0) -> None:
        """Wait until every Sentinel lists every replica (healthy) and N-1 peer Sentinels.

        Peers are found through hello messages published every 2 s, so this takes a
        few seconds after the Sentinels start.
        """
        wait_until(
            self._discovered,
            timeout,
            interval=0.1,
            what="sentinels to discover replicas and each other",
            ignore=(WatchError, OSError),
        )

    def _votes(self, group: str) -> Counter[Address]:
        votes: Counter[Address] = Counter()
        for sentinel in self.sentinels:
            try:
                with sentinel.client(
                    socket_timeout=POLL_TIMEOUT, socket_connect_timeout=POLL_TIMEOUT
                ) as c:
                    reply = command(c, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", group)
            except (WatchError, OSError):
                continue  # a dead or paused Sentinel does not vote
            if reply:
                votes[Address(str(reply[0]), int(reply[1]))] += 1
        return votes

    def _is_master(self, address: Address) -> RedisNode | None:
        try:
            node = self.node(address)
        except KeyError:
            return None
        try:
            with node.client(socket_timeout=POLL_TIMEOUT, socket_connect_timeout=POLL_TIMEOUT) as c:
                reply = command(c, "ROLE")
        except (WatchError, OSError):
            return None
        return node if str(reply[0]) == "master" else None

    def _agreed_primary(self, group: str, exclude: Address | None = None) -> RedisNode | None:
        for address, count in self._votes(group).most_common():
            if count < self.majority or address == exclude:
                continue
            node = self._is_master(address)
            if node is not None:
                return node
        return None

    def current_primary(self, group: str) -> RedisNode:
        """The node a majority of Sentinels name as primary and whose ROLE is master.

        Raises LookupError when there is no such node right now (e.g. mid-failover).
        """
        node = self._agreed_primary(group)
        if node is None:
            raise LookupError(f"no primary for {group!r} agreed by a majority of sentinels")
        return node

    def wait_primary(self, group: str, timeout: float = 30.0) -> RedisNode:
        """Poll :meth:`current_primary` until it has an answer."""
        return wait_until(
            lambda: self._agreed_primary(group),
            timeout,
            interval=0.1,
            what=f"an agreed primary for {group!r}",
        )

    def wait_failover(self, group: str, old: Address, timeout: float = 30.0) -> RedisNode:
        """Wait until a majority of Sentinels name a primary other than ``old``.

        The new primary must also say ``master`` in ROLE (Sentinel switches its
        answer just before the promoted replica has necessarily confirmed).
        """
        return wait_until(
            lambda: self._agreed_primary(group, exclude=old),
            timeout,
            interval=0.1,
            what=f"sentinels to fail {group!r} over away from {old}",
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every Sentinel and Redis (Sentinels first, so none fails over mid-stop).

        Idempotent. All processes get SIGTERM before any is waited for.
        """
        sentinel_procs = [s.process for s in self.sentinels]
        redis_procs = [n.process for n in self.nodes]
        for group in (sentinel_procs, redis_procs):
            for proc in group:
                proc.terminate()
            for proc in group:
                proc.stop(timeout)
