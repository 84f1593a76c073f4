"""A real ``redis-sentinel`` on loopback, for the demo, tests and benchmarks.

Sentinel's timing of s_down/o_down, its leader election and TILT are what the
control plane follows, so tests run the real thing. :class:`SentinelNode` is one
Sentinel with a writable conf file (Sentinel rewrites it with what it learns)
and the ``SENTINEL …`` questions tests ask it; the start/stop/kill handles come
from :class:`~xds.lab.server.ServerNode`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from redis_sentinel_watch.blocking import command
from redis_sentinel_watch.model import Address
from redis_sentinel_watch.replies import pairs_to_dict
from xds.lab.server import LabStartError, ServerNode, base_conf, find_binary

__all__ = ["SentinelNode"]


class SentinelNode(ServerNode):
    """One ``redis-sentinel`` on 127.0.0.1 monitoring some master groups."""

    kind: ClassVar[str] = "sentinel"
    monitors: tuple[tuple[str, Address], ...] = ()

    @classmethod
    def _argv_for(cls, conf_path: Path) -> list[str]:
        binary = find_binary("redis-sentinel")
        if binary is not None:
            return [binary, str(conf_path)]
        server = find_binary("redis-server")
        if server is None:
            raise LabStartError("neither redis-sentinel nor redis-server found")
        return [server, str(conf_path), "--sentinel"]

    @classmethod
    def start(
        cls,
        workdir: Path,
        port: int | None = None,
        monitors: Sequence[tuple[str, Address]] = (),
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10000,
        *,
        timeout: float = 10.0,
        extra_conf: Sequence[str] = (),
        group_conf: Sequence[str] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> SentinelNode:
        """Start a Sentinel monitoring ``(group, primary address)`` pairs; wait for PING.

        The conf file lives in the Sentinel's own directory and stays writable,
        because Sentinel rewrites it with what it learns (replicas, peers, epochs).
        ``extra_conf`` lines go before the monitors (they override the defaults
        above them, e.g. ``sentinel resolve-hostnames yes``); ``group_conf``
        lines follow each monitor with ``{group}`` replaced by its name (e.g.
        ``sentinel auth-pass {group} secret``). ``client_options`` (e.g. a
        password for ``requirepass``) are used by every lab client of the node.
        """

        def conf_lines(directory: Path, chosen: int) -> list[str]:
            lines = [
                *base_conf(directory, chosen),
                "sentinel resolve-hostnames no",
                *extra_conf,
            ]
            for group, primary in monitors:
                lines += [
                    f"sentinel monitor {group} {primary.host} {primary.port} {quorum}",
                    f"sentinel down-after-milliseconds {group} {down_after_ms}",
                    f"sentinel failover-timeout {group} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {group} 1",
                    *(line.replace("{group}", group) for line in group_conf),
                ]
            return lines

        node = cls._launch(workdir, port, conf_lines, timeout, client_options)
        node.monitors = tuple(monitors)
        return node

    def master_addr(self, group: str) -> Address | None:
        """``SENTINEL GET-MASTER-ADDR-BY-NAME``; None if the group is unknown."""
        with self.client() as c:
            reply = command(c, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", group)
        if not reply:
            return None
        return Address(str(reply[0]), int(reply[1]))

    def master_info(self, group: str) -> dict[str, str]:
        """``SENTINEL MASTER <group>`` as a dict (flags, num-other-sentinels, ...)."""
        with self.client() as c:
            return pairs_to_dict(command(c, "SENTINEL", "MASTER", group), "SENTINEL MASTER")

    def known_replicas(self, group: str) -> list[dict[str, str]]:
        """``SENTINEL REPLICAS <group>``: one dict per replica Sentinel knows about."""
        with self.client() as c:
            reply = command(c, "SENTINEL", "REPLICAS", group)
        return [pairs_to_dict(entry, "SENTINEL REPLICAS") for entry in reply or []]

    def known_sentinels(self, group: str) -> list[dict[str, str]]:
        """``SENTINEL SENTINELS <group>``: the *other* Sentinels this one has heard from."""
        with self.client() as c:
            reply = command(c, "SENTINEL", "SENTINELS", group)
        return [pairs_to_dict(entry, "SENTINEL SENTINELS") for entry in reply or []]
