"""The one topology every column runs against, and putting it back between rounds.

Redis primary + replica and three Sentinels (``down-after-milliseconds 1000``)
from :class:`xds.lab.SentinelCluster`; in front of the two Redis nodes, side by
side: sentinel-xds with one Envoy sidecar (bootstrap from ``sentinel-xds
bootstrap``, exactly as an operator would make it), HAProxy with the published
role check, and HAProxy tuned. redis-py's Sentinel client needs nothing extra.

The peers (both HAProxies and redis-py) write during the same failovers, so they
are compared on identical events. sentinel-xds gets its own rounds on the same
topology afterwards: its control plane acts on Redis (fencing a live old
primary, draining), which would change what the peers' clients see. "Healthy"
below means every running path routes to the agreed primary and Sentinel could
fail over again right now.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from redis_sentinel_watch import Address, WatchError
from xds.lab import EnvoyProcess, RedisNode, SentinelCluster, free_port, wait_until
from xds.lab.controlplane import ControlPlane

from .clients import Client, ProxyClient, SentinelClient
from .haproxy import DEFAULT_CHECK, TUNED_CHECK, HAProxy

__all__ = ["COLUMNS", "GROUP", "Topology"]

GROUP = "mymaster"
#: Column names, in the order tables and plots show them.
COLUMNS = ("sentinel-xds", "haproxy", "haproxy-tuned", "redis-py-sentinel")


def sidecar_bootstrap(node_id: str, xds: Address, admin: Address) -> str:
    """Run ``sentinel-xds bootstrap`` (the CLI, as an operator would) and return the YAML."""
    argv = [sys.executable, "-m", "xds.ops.cli", "bootstrap", "--node-id", node_id]
    argv += ["--xds", str(xds), "--admin", str(admin)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"sentinel-xds bootstrap failed: {done.stderr.strip()}")
    return done.stdout


class Topology:
    """Everything running for one benchmark run; :meth:`stop` stops all of it."""

    def __init__(self, workdir: Path, columns: Sequence[str] = COLUMNS) -> None:
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; choose from {COLUMNS}")
        self.workdir = workdir
        self.columns = tuple(c for c in COLUMNS if c in columns)
        self.cluster: SentinelCluster | None = None
        self.control_plane: ControlPlane | None = None
        self.envoy: EnvoyProcess | None = None
        self.listen = Address("127.0.0.1", free_port())
        self.haproxies: dict[str, HAProxy] = {}

    @classmethod
    def start(cls, workdir: Path, columns: Sequence[str] = COLUMNS) -> Topology:
        """Start the cluster and what the ``columns`` need; wait until all is healthy."""
        topo = cls(workdir, columns)
        try:
            topo._start()
        except BaseException:
            topo.stop()
            raise
        return topo

    def _start(self) -> None:
        self.cluster = SentinelCluster.start(self.workdir, groups=(GROUP,), down_after_ms=1000)
        servers = [n.address for n in self.cluster.nodes]
        for variant in (DEFAULT_CHECK, TUNED_CHECK):
            if variant.name in self.columns:
                self.haproxies[variant.name] = HAProxy(self.workdir, servers, variant)
        self.wait_healthy()

    def start_sidecar(self) -> None:
        """Start ``sentinel-xds serve`` and one Envoy sidecar bootstrapped by the CLI.

        Separate from :meth:`start` because the control plane acts on Redis (it
        fences an old primary that is still alive, and drains): while it runs, the
        peers' clients would see its effects, not a world without it.
        """
        self.control_plane = ControlPlane.for_topology(
            self.workdir, self.sentinels.sentinel_addresses, {GROUP: self.listen}
        ).start()
        admin = Address("127.0.0.1", free_port())
        self.envoy = EnvoyProcess.start(
            self.workdir,
            sidecar_bootstrap("bench-sidecar", self.control_plane.xds, admin),
            admin.port,
            name="envoy-sidecar",
        )
        self.envoy.wait_listener(self.listen.port, timeout=20)
        self.wait_healthy()

    # --- views -------------------------------------------------------------------

    @property
    def sentinels(self) -> SentinelCluster:
        assert self.cluster is not None, "topology not started"
        return self.cluster

    def primary(self) -> RedisNode:
        return self.sentinels.current_primary(GROUP)

    def other(self, node: RedisNode) -> RedisNode:
        """The node that is not ``node`` (there are exactly two)."""
        (replica,) = [n for n in self.sentinels.nodes if n.address != node.address]
        return replica

    def client_factories(self) -> dict[str, Callable[[], Client]]:
        """A fresh application client per column (each round starts with none open)."""
        sentinels = self.sentinels.sentinel_addresses
        factories: dict[str, Callable[[], Client]] = {
            "sentinel-xds": lambda: ProxyClient(self.listen),
            "haproxy": lambda: ProxyClient(self.haproxies["haproxy"].listen),
            "haproxy-tuned": lambda: ProxyClient(self.haproxies["haproxy-tuned"].listen),
            "redis-py-sentinel": lambda: SentinelClient(sentinels, GROUP),
        }
        return {c: f for c, f in factories.items() if c in self.columns}

    # --- health ------------------------------------------------------------------

    def replica_synced(self, replica: RedisNode, primary: RedisNode) -> bool:
        """``replica`` replicates ``primary``, the link is up and its offset caught up.

        The primary's offset is read *first*: with writers running it only grows, so
        reading it after the replica's would keep finding the replica behind.
        """
        primary_offset = int(primary.info("replication").get("master_repl_offset", -1))
        info = replica.info("replication")
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return False
        if int(info.get("master_port", 0)) != primary.address.port:
            return False
        return int(info.get("slave_repl_offset", -2)) >= primary_offset

    def _sentinels_ready(self, primary: RedisNode, replica: RedisNode) -> bool:
        """Every Sentinel names ``primary`` and sees ``replica`` as a healthy, promotable one."""
        for sentinel in self.sentinels.sentinels:
            if sentinel.master_addr(GROUP) != primary.address:
                return False
            if "failover_in_progress" in sentinel.master_info(GROUP).get("flags", ""):
                return False
            entries = [
                e
                for e in sentinel.known_replicas(GROUP)
                if (e.get("ip"), e.get("port")) == (replica.address.host, str(replica.address.port))
            ]
            if len(entries) != 1:
                return False
            entry = entries[0]
            flags = entry.get("flags", "")
            if "s_down" in flags or "disconnected" in flags or "slave" not in flags:
                return False
            if entry.get("master-link-status") != "ok" or entry.get("slave-priority") == "0":
                return False
            if entry.get("master-port") != str(primary.address.port):
                return False
        return True

    def healthy(self) -> RedisNode | None:
        """The primary if every path is back to normal, else None."""
        primary = self.sentinels.current_primary(GROUP)
        replica = self.other(primary)
        if not self.replica_synced(replica, primary):
            return None
        if not self._sentinels_ready(primary, replica):
            return None
        if self.envoy is not None and self.envoy.cluster_hosts(f"redis/{GROUP}") != [
            primary.address
        ]:
            return None
        for hap in self.haproxies.values():
            states = hap.server_states()
            if {a for a, s in states.items() if s == "UP"} != {primary.address}:
                return None
        return primary

    def wait_healthy(self, timeout: float = 60.0) -> RedisNode:
        """Wait until :meth:`healthy`; returns the primary."""
        return wait_until(
            self.healthy,
            timeout,
            interval=0.1,
            what="the topology to be healthy (replica synced, sentinels ready, "
            "envoy and haproxy on the primary)",
            ignore=(redis.RedisError, WatchError, OSError, LookupError, ValueError),
        )

    def _failover_settled(self, new: RedisNode) -> bool:
        for sentinel in self.sentinels.sentinels:
            info = sentinel.master_info(GROUP)
            if (info.get("ip"), info.get("port")) != (new.address.host, str(new.address.port)):
                return False
            if info.get("flags") != "master" or info.get("role-reported") != "master":
                return False
            if int(info.get("last-ok-ping-reply", 1_000_000)) > 500:
                return False
        return True

    def wait_failover_settled(self, new: RedisNode, timeout: float = 30.0) -> None:
        """Wait until every Sentinel follows ``new``, is done failing over and pings it fine.

        A killed primary restarted sooner can be promoted back: in one run a
        Sentinel on a busy machine saw the new primary as down ~1 s after
        ``+switch-master``, won a new election and promoted the restarted, *empty*
        old primary, and the new primary resynced from it (every key lost).
        """
        wait_until(
            lambda: self._failover_settled(new),
            timeout,
            interval=0.05,
            what=f"every Sentinel to settle on {new.name}",
            ignore=(redis.RedisError, WatchError, OSError, ValueError),
        )

    def wait_rejoined(self, old: RedisNode, new: RedisNode, timeout: float = 60.0) -> float:
        """Wait until ``old`` replicates ``new`` and caught up; returns when (monotonic)."""
        wait_until(
            lambda: self.replica_synced(old, new),
            timeout,
            interval=0.05,
            what=f"{old.name} to rejoin as a replica of {new.name} and sync",
            ignore=(redis.RedisError, WatchError, OSError),
        )
        return time.monotonic()

    def stop(self) -> None:
        for hap in self.haproxies.values():
            hap.stop()
        if self.envoy is not None:
            self.envoy.stop()
        if self.control_plane is not None:
            self.control_plane.stop()
        if self.cluster is not None:
            self.cluster.stop()
