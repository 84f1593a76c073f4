"""Kill and planned failovers through the sidecar: how fast, how many errors, writes lost.

Goals (issue 3): after a ``kill -9`` of the primary, the sidecar routes to the
promoted replica within 50 ms of the moment that replica reports ``ROLE``
master; after an externally triggered ``SENTINEL FAILOVER``, 0 acknowledged
writes are lost.

One Redis primary/replica pair with three Sentinels (``down-after-milliseconds
1000``, ``failover-timeout 10000``) for the whole run; per control-plane
*variant* a fresh ``sentinel-xds serve`` and one Envoy sidecar:

* ``default``: switch when the selected replica says master, fence the old
  primary with ``CLIENT PAUSE WRITE`` (the shipped defaults);
* ``no-fence``: switch on promotion, no fence;
* ``majority``: switch only when a Sentinel majority agrees, no fence (what a
  control plane waiting for ``+switch-master`` does).

Each round: wait until healthy (agreed primary, synced replica every Sentinel
finds promotable, Envoy and /status on the primary), write ``SET`` every 10 ms
on one connection through the sidecar, then ``kill -9`` the primary (and
restart it afterwards, as a supervisor would) or send ``SENTINEL FAILOVER``.
Observers poll the replica's ``ROLE`` (2 ms), Envoy's /clusters (5 ms) and the
Sentinels (10 ms). Recorded per round: when the replica said master, when Envoy
switched and when a Sentinel majority named it (ms after the action), the
longest gap between two acknowledged writes (the write-unavailable window),
failed commands, acknowledged writes missing on the new primary, and whether
the client's connection survived (a reconnect would be needed otherwise).

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.failover_kill [--rounds 10] [--variants default,no-fence,majority]
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from bench import common
from bench.common import stats
from redis_sentinel_watch import Address, WatchError
from tests.resp import ConnectionLost, OneConnection, RespError
from xds.lab import EnvoyProcess, RedisNode, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.lab.process import install_sigterm_handler
from xds.resources.bootstrap import bootstrap_yaml

GROUP = "mymaster"
DEFAULT_OUT = Path(__file__).parent / "results" / "failover_kill.json"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-fence": {"fence_pause_ms": 0},
    "majority": {"react_on_promotion": False, "fence_pause_ms": 0},
}


class Writer(threading.Thread):
    """``SET fk:<n>`` every 10 ms on one connection; the time of every acknowledged write."""

    def __init__(self, listen: Address, prefix: str) -> None:
        super().__init__(daemon=True)
        self.conn = OneConnection(listen.host, listen.port, timeout=30)
        self.prefix = prefix
        self.acked: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self.lost_connection: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        for n in itertools.count(1):
            if self.stopping.is_set():
                return
            key = f"{self.prefix}:{n}"
            try:
                if self.conn.command("SET", key, str(n)) == "OK":
                    self.acked.append((time.monotonic(), key))
            except RespError as exc:
                self.errors.append(str(exc))
            except ConnectionLost as exc:
                self.lost_connection = str(exc)
                return
            self.stopping.wait(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=40)
        self.conn.close()


class FirstTime(threading.Thread):
    """Checks ``predicate`` every ``interval`` s until true; ``at`` is when it first was."""

    def __init__(self, predicate: Callable[[], bool], interval: float) -> None:
        super().__init__(daemon=True)
        self.predicate = predicate
        self.interval = interval
        self.at: float | None = None
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self.predicate():
                    self.at = time.monotonic()
                    return
            except (redis.RedisError, WatchError, OSError, ValueError):
                pass
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


@dataclass
class Round:
    variant: str
    scenario: str
    n: int
    old: str
    new: str
    replica_master_ms: float | None
    envoy_switch_ms: float | None
    envoy_after_replica_master_ms: float | None
    sentinel_majority_ms: float | None
    unavailable_ms: float
    failed: int
    lost: int
    connection_kept: bool
    errors: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster = SentinelCluster.start(workdir, groups=(GROUP,))
        self.listen = Address("127.0.0.1", free_port())
        self.cp: ControlPlane | None = None
        self.envoy: EnvoyProcess | None = None

    def nodes(self) -> list[RedisNode]:
        return self.cluster.nodes

    def start_variant(self, name: str) -> None:
        self.stop_variant()
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        data = yaml.safe_load(
            config_yaml(self.cluster.sentinel_addresses, {GROUP: self.listen}, xds, admin)
        )
        data["watch"].update(VARIANTS[name])
        self.cp = ControlPlane(self.workdir, yaml.safe_dump(data), xds, admin, f"cp-{name}")
        self.cp.start()
        envoy_admin = free_port()
        self.envoy = EnvoyProcess.start(
            self.workdir,
            bootstrap_yaml(f"sidecar-{name}", [xds], admin=Address("127.0.0.1", envoy_admin)),
            envoy_admin,
            name=f"sidecar-{name}",
        )
        self.envoy.wait_listener(self.listen.port, timeout=20)

    def stop_variant(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()
        if self.cp is not None:
            self.cp.stop()
        self.envoy = self.cp = None

    def envoy_hosts(self) -> list[Address]:
        assert self.envoy is not None
        return self.envoy.cluster_hosts(f"redis/{GROUP}")

    def healthy(self) -> tuple[RedisNode, RedisNode] | None:
        """(primary, replica) when everything agrees and the replica is promotable."""
        primary = self.cluster.current_primary(GROUP)
        replica = next(n for n in self.nodes() if n is not primary)
        info = replica.info("replication")
        if info.get("master_link_status") != "up" or info.get("master_port") != str(
            primary.address.port
        ):
            return None
        for s in self.cluster.sentinels:
            entries = {
                (e.get("ip"), e.get("port")): e.get("flags", "") for e in s.known_replicas(GROUP)
            }
            flags = entries.get((replica.address.host, str(replica.address.port)))
            if flags is None or "s_down" in flags or "disconnected" in flags:
                return None
        assert self.cp is not None
        group = self.cp.status().group(GROUP)
        if group is None or group.primary != str(primary.address) or group.provisional:
            return None
        if self.envoy_hosts() != [primary.address]:
            return None
        return primary, replica

    def round(self, variant: str, scenario: str, n: int) -> Round:
        primary, replica = wait_until(
            self.healthy, 60, interval=0.2, what="a healthy topology", ignore=(Exception,)
        )
        writer = Writer(self.listen, f"fk:{variant}:{scenario}:{n}")
        writer.start()
        wait_until(lambda: len(writer.acked) >= 30, 10, what="writes before the action")
        role_client = replica.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        watchers = {
            "master": FirstTime(lambda: role_client.execute_command("ROLE")[0] == "master", 0.002),
            "envoy": FirstTime(lambda: self.envoy_hosts() == [replica.address], 0.005),
            "majority": FirstTime(
                lambda: self.cluster._votes(GROUP).get(replica.address, 0) >= self.cluster.majority,
                0.01,
            ),
        }
        acted = time.monotonic()
        if scenario == "kill":
            primary.kill()
        else:
            self._sentinel_failover()
        try:
            wait_until(lambda: watchers["envoy"].at, 30, what="Envoy to switch")
            wait_until(lambda: watchers["majority"].at, 30, what="a Sentinel majority")
            switched = len(writer.acked)
            wait_until(lambda: len(writer.acked) >= switched + 30, 15, what="writes after")
        finally:
            writer.stop()
            for w in watchers.values():
                w.stop()
            role_client.close()
        with replica.client() as c:
            pipe = c.pipeline(transaction=False)
            for _, key in writer.acked:
                pipe.exists(key)
            lost = sum(1 for present in pipe.execute() if not present)
        times = [t for t, _ in writer.acked]
        around = [t for t in times if t >= acted - 0.5]
        gap = max((b - a for a, b in itertools.pairwise(around)), default=0.0)
        if scenario == "kill":
            primary.restart()  # as a supervisor would; Sentinel demotes it (~10 s)

        def ms(at: float | None) -> float | None:
            return round((at - acted) * 1000, 1) if at is not None else None

        master_at, envoy_at = watchers["master"].at, watchers["envoy"].at
        return Round(
            variant,
            scenario,
            n,
            str(primary.address),
            str(replica.address),
            ms(master_at),
            ms(envoy_at),
            round((envoy_at - master_at) * 1000, 1) if master_at and envoy_at else None,
            ms(watchers["majority"].at),
            round(gap * 1000, 1),
            len(writer.errors),
            lost,
            writer.lost_connection is None,
            sorted(set(writer.errors)),
        )

    def _sentinel_failover(self) -> None:
        def sent() -> bool:
            try:
                with self.cluster.sentinels[0].client() as c:
                    c.execute_command("SENTINEL", "FAILOVER", GROUP)
            except redis.ResponseError as exc:  # INPROG / NOGOODSLAVE right after a round
                if "INPROG" in str(exc) or "NOGOODSLAVE" in str(exc):
                    return False
                raise
            return True

        wait_until(sent, 15, interval=0.2, what="SENTINEL FAILOVER to be accepted")

    def stop(self) -> None:
        self.stop_variant()
        self.cluster.stop()


def summarize(rounds: list[Round]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (variant, scenario), group in itertools.groupby(
        sorted(rounds, key=lambda r: (r.variant, r.scenario)), key=lambda r: (r.variant, r.scenario)
    ):
        rs = list(group)
        out[f"{variant}/{scenario}"] = {
            "rounds": len(rs),
            "replica_master_ms": stats([r.replica_master_ms for r in rs]),
            "envoy_after_replica_master_ms": stats([r.envoy_after_replica_master_ms for r in rs]),
            "sentinel_majority_ms": stats([r.sentinel_majority_ms for r in rs]),
            "unavailable_ms": stats([r.unavailable_ms for r in rs]),
            "failed_per_round": stats([float(r.failed) for r in rs]),
            "lost_total": sum(r.lost for r in rs),
            "lost_per_round": [r.lost for r in rs],
            "reconnects": sum(0 if r.connection_kept else 1 for r in rs),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = common.parser("bench.failover_kill", __doc__, rounds=10)
    p.add_argument("--scenarios", default="kill,failover")
    p.add_argument("--variants", default="default")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--workdir", type=Path, help="keep process logs here (default: a temporary directory)"
    )
    args = p.parse_args(argv)
    scenarios = common.choices(p, "--scenarios", args.scenarios, ("kill", "failover"))
    variants = common.choices(p, "--variants", args.variants, tuple(VARIANTS))
    install_sigterm_handler()
    rounds: list[Round] = []
    with common.work_directory(args.workdir, "bench-failover-") as workdir:
        bench = Bench(workdir)
        try:
            for variant in variants:
                bench.start_variant(variant)
                for n, scenario in itertools.product(range(1, args.rounds + 1), scenarios):
                    r = bench.round(variant, scenario, n)
                    rounds.append(r)
                    print(
                        f"{variant:9} {scenario:8} #{n:<2} master {r.replica_master_ms} ms, "
                        f"envoy +{r.envoy_after_replica_master_ms} ms, majority "
                        f"{r.sentinel_majority_ms} ms, gap {r.unavailable_ms} ms, "
                        f"failed {r.failed}, lost {r.lost}",
                        flush=True,
                    )
        finally:
            bench.stop()
            stop_all()
    result = common.result(
        "failover_kill",
        common.machine("shared machine: other benchmarks may have run at the same time"),
        summarize(rounds),
        rounds,
        setup="1 primary + 1 replica, 3 Sentinels, down-after 1000 ms, failover-timeout "
        "10000 ms; writer SET every 10 ms on one connection through one Envoy sidecar",
        goals="kill: Envoy within 50 ms of ROLE master; SENTINEL FAILOVER: 0 lost",
    )
    common.write_result(args.out, result, result["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
