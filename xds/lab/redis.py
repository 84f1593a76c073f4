"""A real ``redis-server`` on loopback, for the demo, tests and benchmarks.

The control plane's whole job is to react to what Redis Sentinel does to
Redis nodes, and Sentinel's behaviour (when replicas are reconfigured, what a
promoted node says) is subtle enough that mocks would only test our
assumptions. :class:`RedisNode` is one real server with no persistence in its
own directory, with handles to break it (from :class:`~xds.lab.server.ServerNode`)
and to read what it says about replication. Its Sentinels are
:mod:`xds.lab.sentinel`; a whole topology is :mod:`xds.lab.cluster`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from redis_sentinel_watch.blocking import command
from redis_sentinel_watch.errors import WatchError
from redis_sentinel_watch.model import Address
from redis_sentinel_watch.replies import parse_info
from xds.lab.process import wait_until
from xds.lab.server import LabStartError, ServerNode, base_conf, find_binary

__all__ = ["RedisNode"]


class RedisNode(ServerNode):
    """One ``redis-server`` on 127.0.0.1, with no persistence, in its own directory."""

    kind: ClassVar[str] = "redis"

    @classmethod
    def _argv_for(cls, conf_path: Path) -> list[str]:
        binary = find_binary("redis-server")
        if binary is None:
            raise LabStartError("redis-server not found on PATH or in /usr/bin")
        return [binary, str(conf_path)]

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        replica_of: Address | None = None,
        *,
        timeout: float = 10.0,
        extra_conf: Sequence[str] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> RedisNode:
        """Start a Redis (a replica of ``replica_of`` if given) and wait until it answers PING.

        ``extra_conf`` lines are appended to the generated redis.conf (e.g.
        ``requirepass``); ``client_options`` are then needed to talk to it.
        Does not wait for replication; see :meth:`wait_replica_synced`.
        """

        def conf_lines(directory: Path, chosen: int) -> list[str]:
            lines = [
                *base_conf(directory, chosen),
                'save ""',
                "appendonly no",
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
            ]
            if replica_of is not None:
                lines.append(f"replicaof {replica_of.host} {replica_of.port}")
            return lines + list(extra_conf)

        return cls._launch(workdir, port, conf_lines, timeout, client_options)

    def info(self, section: str = "replication") -> dict[str, str]:
        """``INFO <section>`` as a flat dict of strings."""
        with self.client() as c:
            raw = command(c, "INFO", section)
        return parse_info(raw, f"INFO {section} of {self.name}")

    def role(self) -> str:
        """``'master'`` or ``'slave'``, from the ROLE command."""
        with self.client() as c:
            reply = command(c, "ROLE")
        return str(reply[0])

    def wait_replica_synced(self, timeout: float = 10.0) -> None:
        """Wait until INFO replication says ``master_link_status:up``."""

        def synced() -> bool:
            return self.info("replication").get("master_link_status") == "up"

        wait_until(
            synced,
            timeout,
            what=f"{self.name} to finish syncing with its primary",
            ignore=(WatchError, OSError),
        )
