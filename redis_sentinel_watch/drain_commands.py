"""The drain's commands: Sentinel's view of a group, a node's replication and priority,
the switchover itself, and the ACL checks that run nothing.

Unlike the watcher's commands (:mod:`.watch_commands`) these raise
(:class:`UnreachableError`, :class:`ReplyError` and their subclasses): an
operator tool stops and says why instead of carrying on.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

from .errors import ReplyError, UnknownGroupError, acl_name, map_redis_errors
from .io import PERMISSION_PROBE_GROUP
from .model import Address, ReplicaEntry
from .redis_clients import RedisClients
from .replies import (
    MasterStatus,
    ReplicationInfo,
    parse_config_int,
    parse_info,
    parse_master_status,
    parse_replica_entries,
    parse_replication,
)

__all__ = ["DrainCommands"]


class DrainCommands(RedisClients):
    """What ``sentinel-xds drain`` / ``undrain`` ask, over :class:`RedisClients`."""

    async def sentinel_master(self, sentinel: Address, group: str) -> MasterStatus:
        raw = await self._ask_sentinel(sentinel, "SENTINEL", "MASTER", group)
        status = parse_master_status(raw, f"SENTINEL MASTER {group}")
        return dataclasses.replace(status, primary=await self._resolver.resolve(status.primary))

    async def sentinel_replicas(self, sentinel: Address, group: str) -> tuple[ReplicaEntry, ...]:
        raw = await self._ask_sentinel(sentinel, "SENTINEL", "REPLICAS", group)
        return tuple([await self._resolver.entry(e) for e in parse_replica_entries(raw, group)])

    async def sentinel_failover(self, sentinel: Address, group: str) -> None:
        await self._ask_sentinel(sentinel, "SENTINEL", "FAILOVER", group)

    async def replication(self, node: Address) -> ReplicationInfo:
        info = parse_replication(await self._ask_node(node, "INFO", "replication"), node)
        if info.master is None:
            return info
        return dataclasses.replace(info, master=await self._resolver.resolve(info.master))

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
        connection: Any = None
        try:
            with map_redis_errors(f"redis {node}", who, "multi"):
                connection = await asyncio.wait_for(
                    client.connection_pool.get_connection(), self._timeout * 2
                )
                reply = await asyncio.wait_for(
                    self._queue(connection, ("MULTI",)), self._timeout * 2
                )
            if reply != "OK":  # no transaction: queue nothing, or it would run
                raise ReplyError(f"redis {node}: MULTI answered {reply!r}")
            for command in commands:
                with map_redis_errors(f"redis {node}", who, acl_name(command)):
                    reply = await asyncio.wait_for(
                        self._queue(connection, tuple(command)), self._timeout * 2
                    )
                if reply != "QUEUED":  # not queued: stop, and closing discards the rest
                    raise ReplyError(f"redis {node}: {' '.join(command[:2])} answered {reply!r}")
        finally:
            if connection is not None:
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
