"""The watcher's commands: poll a Sentinel, ask a node's ROLE, fence, peers, pub/sub.

Unlike the drain's commands (:mod:`.drain_commands`) these never raise: the
watcher must keep polling whatever one Sentinel or node does, so a failure
becomes an unreachable :class:`SentinelView`, an empty role or an error text.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

from .errors import ReplyError, UnreachableError, map_redis_errors
from .io import EVENT_CHANNELS
from .model import Address, GroupView, SentinelView
from .redis_clients import RedisClients
from .replies import (
    SentinelEvent,
    drained_replicas,
    parse_event,
    parse_master,
    parse_replica_entries,
    parse_replicas,
    parse_sentinels,
    promoted_replica,
)

__all__ = ["WatchCommands"]


class WatchCommands(RedisClients):
    """What the watcher asks, over :class:`RedisClients` (see :class:`.io.SentinelIO`)."""

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
                try:  # on its own: an odd link field must not hide the replicas
                    entries = parse_replica_entries(raw, view.group)
                except ReplyError as exc:
                    problems.append(str(exc))
                else:
                    view = dataclasses.replace(view, replica_entries=entries)
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
