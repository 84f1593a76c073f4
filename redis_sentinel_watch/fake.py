"""An in-memory :class:`~redis_sentinel_watch.io.SentinelIO` for unit tests.

Shipped with the package (like httpx's ``MockTransport``) so tests of anything
built on the watcher can script Sentinel answers without a server: set what
each Sentinel says and what each node's ``ROLE`` is, and push events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from .errors import UnreachableError
from .model import Address, GroupView, SentinelView
from .replies import SentinelEvent

__all__ = ["FakeSentinelIO"]


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
        self._queues: dict[Address, asyncio.Queue[SentinelEvent | None]] = {}

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
    ) -> None:
        """Make ``sentinel`` report ``primary`` at ``epoch`` for ``group``.

        ``failover_in_progress`` and ``promoted`` describe a Sentinel leading a
        failover that selected ``promoted``.
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
        # Like the real one: groups not asked for are reported too (the watcher warns).
        return SentinelView(sentinel, True, dict(view.groups), tilt=view.tilt)

    async def role(self, node: Address) -> str:
        self.role_queries[node] = self.role_queries.get(node, 0) + 1
        return self.roles.get(node, "")

    async def pause_writes(self, node: Address, ms: int) -> str:
        self.admin_log.append(("pause", node))
        if self.roles.get(node, "") == "":
            return f"redis {node}: connection refused"
        self.paused[node] = ms
        return ""

    async def unpause_writes(self, node: Address) -> str:
        self.admin_log.append(("unpause", node))
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
