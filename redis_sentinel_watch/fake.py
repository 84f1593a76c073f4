"""An in-memory :class:`~redis_sentinel_watch.io.SentinelIO` for unit tests.

Shipped with the package (like httpx's ``MockTransport``) so tests of anything
built on the watcher or the drain can script Sentinel answers without a
server: set what each Sentinel says and what each node's ``ROLE`` is, push
events; for the drain, add nodes (:meth:`FakeSentinelIO.add_node`), deny ACL
permissions and inject failures. ``SENTINEL FAILOVER`` promotes the first
promotable replica at once, as a well-behaved Sentinel would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .auth import Credentials, TlsSettings
from .errors import (
    NoPermissionError,
    ReplyError,
    UnknownGroupError,
    UnreachableError,
    WatchError,
    acl_name,
)
from .model import DEFAULT_REPLICA_PRIORITY, Address, GroupView, ReplicaEntry, SentinelView
from .replies import MasterStatus, ReplicationInfo, SentinelEvent

__all__ = ["FakeNode", "FakeSentinelIO"]


@dataclass
class FakeNode:
    """What a fake Redis node says about itself (its role lives in ``FakeSentinelIO.roles``)."""

    master: Address | None = None
    link_up: bool = True
    offset: int = 0
    priority: int = DEFAULT_REPLICA_PRIORITY
    config_file: str = ""
    sync_in_progress: bool = False


class FakeSentinelIO:
    """Scriptable Sentinels: ``say()``, ``go_down()``, ``set_role()``, ``emit()``."""

    def __init__(self) -> None:
        self.answers: dict[Address, SentinelView] = {}
        self.roles: dict[Address, str] = {}
        self.queries = 0
        self.role_queries: dict[Address, int] = {}
        self.paused: dict[Address, int] = {}  # node -> pause ms asked for (until unpaused)
        self.admin_log: list[tuple[str, Address]] = []
        self.known_peers: dict[Address, tuple[Address, ...]] = {}  # SENTINEL SENTINELS
        self.nodes: dict[Address, FakeNode] = {}
        #: ACL names (``client|pause``) each Sentinel or node refuses with NOPERM
        self.denied: dict[Address, set[str]] = {}
        #: (address, ACL name) -> the error that command raises
        self.failures: dict[tuple[Address, str], WatchError] = {}
        #: every drain command run, as (address, "CONFIG SET replica-priority 0") …
        self.commands: list[tuple[Address, str]] = []
        self._queues: dict[Address, asyncio.Queue[SentinelEvent | None]] = {}
        #: every :meth:`reconfigure`: (timeout_s, sentinel_auth, redis_auth, tls)
        self.settings: list[
            tuple[float, Credentials | None, Credentials | None, TlsSettings | None]
        ] = []

    def say(
        self,
        sentinel: Address,
        group: str,
        primary: Address,
        epoch: int = 0,
        replicas: Sequence[Address] = (),
        tilt: bool = False,
        *,
        failover_in_progress: bool = False,
        promoted: Address | None = None,
        failover_timeout_ms: int = 0,
        down_after_ms: int = 0,
        replica_entries: Sequence[ReplicaEntry] = (),
    ) -> None:
        """Make ``sentinel`` report ``primary`` at ``epoch`` for ``group``.

        ``failover_in_progress`` and ``promoted`` describe a Sentinel leading a
        failover that selected ``promoted``. ``replica_entries`` is its
        ``SENTINEL REPLICAS`` answer (flags, link); by default every replica is
        listed healthy, with the priority and link of its :class:`FakeNode`.
        """
        old = self.answers.get(sentinel)
        groups = dict(old.groups) if old and old.reachable else {}
        groups[group] = GroupView(
            group,
            primary,
            epoch,
            tuple(replicas),
            failover_in_progress=failover_in_progress,
            promoted=promoted,
            failover_timeout_ms=failover_timeout_ms,
            down_after_ms=down_after_ms,
            replica_entries=tuple(replica_entries),
        )
        self.answers[sentinel] = SentinelView(sentinel, True, groups, tilt=tilt)

    def go_down(self, sentinel: Address) -> None:
        """Make ``sentinel`` unreachable and end its event stream."""
        self.answers[sentinel] = SentinelView(sentinel, False, error="connection refused")
        queue = self._queues.get(sentinel)
        if queue is not None:
            queue.put_nowait(None)

    def set_role(self, node: Address, role: str) -> None:
        self.roles[node] = role

    def emit(self, event: SentinelEvent) -> None:
        """Deliver a pub/sub event as if ``event.sentinel`` had published it."""
        self._queues.setdefault(event.sentinel, asyncio.Queue()).put_nowait(event)

    async def query(self, sentinel: Address, groups: Sequence[str]) -> SentinelView:
        self.queries += 1
        view = self.answers.get(sentinel)
        if view is None or not view.reachable:
            return SentinelView(sentinel, False, error="connection refused")
        # Like the real one: groups not asked for are reported too (the watcher warns),
        # each with every replica's SENTINEL REPLICAS entry.
        answered = {
            name: dataclasses.replace(gv, replica_entries=self._entries(gv))
            for name, gv in view.groups.items()
        }
        return SentinelView(sentinel, True, answered, tilt=view.tilt)

    def _entries(self, view: GroupView) -> tuple[ReplicaEntry, ...]:
        """``SENTINEL REPLICAS``: as scripted by :meth:`say`, else each replica healthy."""
        if view.replica_entries:
            return view.replica_entries
        out = []
        for address in sorted({*view.replicas, *view.drained}):
            node = self.nodes.get(address, FakeNode())
            out.append(ReplicaEntry(address, frozenset({"slave"}), node.priority, node.link_up))
        return tuple(out)

    async def role(self, node: Address) -> str:
        self.role_queries[node] = self.role_queries.get(node, 0) + 1
        return self.roles.get(node, "")

    async def pause_writes(self, node: Address, ms: int) -> str:
        self.admin_log.append(("pause", node))
        if self.roles.get(node, "") == "":
            return f"redis {node}: connection refused"
        try:
            self._run(node, "CLIENT", "PAUSE", str(ms), "WRITE")
        except WatchError as exc:
            return str(exc)
        self.paused[node] = ms
        return ""

    async def unpause_writes(self, node: Address) -> str:
        self.admin_log.append(("unpause", node))
        try:
            self._run(node, "CLIENT", "UNPAUSE", changes=node in self.paused)
        except WatchError as exc:
            return str(exc)
        self.paused.pop(node, None)
        return ""

    async def events(self, sentinel: Address) -> AsyncIterator[SentinelEvent]:
        view = self.answers.get(sentinel)
        if view is None or not view.reachable:
            raise UnreachableError(f"sentinel {sentinel}: connection refused")
        queue = self._queues.setdefault(sentinel, asyncio.Queue())
        while True:
            event = await queue.get()
            if event is None:
                raise UnreachableError(f"sentinel {sentinel}: connection lost")
            yield event

    async def peers(self, sentinel: Address, group: str) -> tuple[Address, ...] | None:
        view = self.answers.get(sentinel)
        if view is None or not view.reachable:
            return None
        return self.known_peers.get(sentinel, ())

    async def aclose(self) -> None:
        return None

    def reconfigure(
        self,
        timeout_s: float,
        *,
        sentinel_auth: Credentials | None,
        redis_auth: Credentials | None,
        tls: TlsSettings | None,
    ) -> None:
        """Records the settings (``self.settings``), so a test sees what a reload handed over."""
        self.settings.append((timeout_s, sentinel_auth, redis_auth, tls))

    # ------------------------------------------------------------------ drain

    def add_node(
        self,
        address: Address,
        master: Address | None = None,
        *,
        priority: int = DEFAULT_REPLICA_PRIORITY,
        offset: int = 0,
        link_up: bool = True,
        config_file: str = "",
        sync_in_progress: bool = False,
    ) -> None:
        """A node: the primary when ``master`` is None, else a replica of ``master``."""
        self.roles[address] = "master" if master is None else "slave"
        self.nodes[address] = FakeNode(
            master, link_up, offset, priority, config_file, sync_in_progress
        )

    def _run(self, address: Address, *command: str, changes: bool = True) -> None:
        """Permission, injected failure, reachability; then log it if it changes anything."""
        name = acl_name(command)
        if name in self.denied.get(address, set()):
            raise NoPermissionError(f"user 'default' on {address} lacks {name}", name)
        failure = self.failures.get((address, name))
        if failure is not None:
            raise failure
        if address in self.answers and not self.answers[address].reachable:
            raise UnreachableError(f"sentinel {address}: connection refused")
        if address not in self.answers and self.roles.get(address, "") == "":
            raise UnreachableError(f"redis {address}: connection refused")
        if changes:
            self.commands.append((address, " ".join(command)))

    def _group(self, sentinel: Address, group: str) -> GroupView:
        view = self.answers.get(sentinel)
        if view is None or group not in view.groups:
            raise UnknownGroupError(f"sentinel {sentinel}: ERR No such master with that name")
        return view.groups[group]

    async def sentinel_master(self, sentinel: Address, group: str) -> MasterStatus:
        self._run(sentinel, "SENTINEL", "MASTER", group, changes=False)
        view = self._group(sentinel, group)
        flags = {"master"}
        if view.failover_in_progress:
            flags.add("failover_in_progress")
        if view.primary_down:
            flags.add("s_down")
        return MasterStatus(
            group,
            view.primary,
            view.config_epoch,
            frozenset(flags),
            view.failover_timeout_ms,
            view.down_after_ms,
        )

    async def sentinel_replicas(self, sentinel: Address, group: str) -> tuple[ReplicaEntry, ...]:
        self._run(sentinel, "SENTINEL", "REPLICAS", group, changes=False)
        return self._entries(self._group(sentinel, group))

    async def sentinel_failover(self, sentinel: Address, group: str) -> None:
        self._run(sentinel, "SENTINEL", "FAILOVER", group)
        view = self._group(sentinel, group)
        candidates = [
            r
            for r in sorted(view.replicas)
            if self.roles.get(r) == "slave" and self.nodes.get(r, FakeNode()).priority > 0
        ]
        if not candidates:
            raise ReplyError(f"sentinel {sentinel}: NOGOODSLAVE No suitable replica to promote")
        new = candidates[0]
        self.roles[new] = "master"
        self.nodes.setdefault(new, FakeNode()).master = None
        others = tuple(sorted({*view.replicas, view.primary} - {new}))
        for s, answer in self.answers.items():
            if answer.reachable and group in answer.groups:
                old = answer.groups[group]
                drained = tuple(a for a in others if self.nodes.get(a, FakeNode()).priority == 0)
                groups = dict(answer.groups)
                groups[group] = dataclasses.replace(
                    old,
                    primary=new,
                    config_epoch=old.config_epoch + 1,
                    replicas=others,
                    drained=drained,
                )
                self.answers[s] = dataclasses.replace(answer, groups=groups)

    async def replication(self, node: Address) -> ReplicationInfo:
        self._run(node, "INFO", "replication", changes=False)
        facts = self.nodes.get(node, FakeNode())
        if self.roles[node] == "master":
            return ReplicationInfo("master", facts.offset)
        return ReplicationInfo(
            "slave", facts.offset, facts.master, facts.link_up, facts.sync_in_progress
        )

    async def replica_priority(self, node: Address) -> int:
        self._run(node, "CONFIG", "GET", "replica-priority", changes=False)
        return self.nodes.get(node, FakeNode()).priority

    async def config_file(self, node: Address) -> str:
        self._run(node, "INFO", "server", changes=False)
        return self.nodes.get(node, FakeNode()).config_file

    async def set_replica_priority(self, node: Address, priority: int) -> None:
        self._run(node, "CONFIG", "SET", "replica-priority", str(priority))
        self.nodes.setdefault(node, FakeNode()).priority = priority

    async def rewrite_config(self, node: Address) -> None:
        self._run(node, "CONFIG", "REWRITE")

    async def replicaof(self, node: Address, primary: Address) -> None:
        self._run(node, "REPLICAOF", primary.host, str(primary.port))
        self.roles[node] = "slave"
        facts = self.nodes.setdefault(node, FakeNode())
        facts.master, facts.link_up = primary, True

    async def check_node_permissions(
        self, node: Address, commands: Sequence[Sequence[str]]
    ) -> None:
        for command in [("MULTI",), *commands]:
            name = acl_name(command)
            if name in self.denied.get(node, set()):
                raise NoPermissionError(f"redis user 'default' on {node} lacks {name}", name)
        self._run(node, "MULTI", changes=False)

    async def check_sentinel_failover(self, sentinel: Address) -> None:
        if "sentinel|failover" in self.denied.get(sentinel, set()):
            raise NoPermissionError(
                f"sentinel user 'default' on {sentinel} lacks sentinel|failover",
                "sentinel|failover",
            )
        self._run(sentinel, "SENTINEL", "FAILOVER", "-", changes=False)
