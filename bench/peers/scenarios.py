# mypy: disallow-untyped-calls=False
# (redis-py leaves Connection, Sentinel and execute_command unannotated)
"""One round of one scenario: writers on, break the primary, restore, count.

A round starts from a healthy topology (every path on the agreed primary,
Sentinel able to fail over), starts one writer per column, triggers the failover,
puts the topology back (the old primary rejoins as a replica and syncs), lets
every writer show it recovered, stops them, and then checks every acknowledged
key on the final primary.

Scenarios:

* ``kill``: ``kill -9`` of the primary; once Sentinel has failed over, the killed
  node is restarted with its own config (as a supervisor would), so it comes back
  claiming ``role:master`` until Sentinel converts it (redis#1813);
* ``failover``: ``SENTINEL FAILOVER`` sent to one Sentinel (a planned switchover
  done the way the peers' users do it);
* ``drain``: ``sentinel-xds drain GROUP HOST:PORT`` on the primary (our planned
  switchover), then ``sentinel-xds undrain`` once it has rejoined.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from xds.lab import RedisNode, wait_until

from .stats import column_round
from .topology import GROUP, Topology
from .writer import Writer

__all__ = ["SCENARIOS", "Scenario", "drain_available", "run_round"]

WARMUP_ACKS = 50  # 0.5 s of writes before the trigger
SETTLE_ACKS = 30  # acknowledged writes after recovery before a round ends
RECOVERY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Scenario:
    name: str
    planned: bool
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("kill", False, "kill -9 of the primary; restarted once Sentinel failed over"),
        Scenario("failover", True, "SENTINEL FAILOVER sent to one Sentinel"),
        Scenario("drain", True, "sentinel-xds drain GROUP HOST:PORT, then undrain"),
    )
}


def drain_available() -> bool:
    """True when this checkout's ``sentinel-xds`` has the ``drain`` command."""
    done = subprocess.run(
        [sys.executable, "-m", "xds.ops.cli", "drain", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return done.returncode == 0


class _PromotionWatch:
    """Polls the replica's ROLE every 5 ms; records when it first says ``master``."""

    def __init__(self, node: RedisNode) -> None:
        self._node = node
        self.promoted_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _PromotionWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        client = self._node.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while not self._stop.is_set():
                try:
                    if str(client.execute_command("ROLE")[0]) == "master":
                        self.promoted_at = time.monotonic()
                        return
                except (redis.RedisError, OSError):
                    pass
                self._stop.wait(0.005)
        finally:
            client.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _sentinel_failover(topo: Topology, timeout: float = 15.0) -> float:
    """Send SENTINEL FAILOVER until a Sentinel accepts it; return when it did.

    Right after a previous round a Sentinel may still answer NOGOODSLAVE (its view
    of the replica not refreshed yet) or INPROG; both are retried.
    """
    sentinel = topo.sentinels.sentinels[0]

    def accepted() -> float | None:
        sent = time.monotonic()
        try:
            with sentinel.client() as c:
                c.execute_command("SENTINEL", "FAILOVER", GROUP)
        except redis.ResponseError as exc:
            if str(exc).startswith(("NOGOODSLAVE", "INPROG")):
                return None
            raise
        return sent

    return wait_until(accepted, timeout, interval=0.1, what="a Sentinel to accept FAILOVER")


def _cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xds.ops.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _drain_args(topo: Topology, command: str, node: RedisNode) -> list[str]:
    assert topo.control_plane is not None
    return [command, "--config", str(topo.control_plane.config_path), GROUP, str(node.address)]


def _missing(primary: RedisNode, keys: Sequence[str]) -> int:
    """How many of ``keys`` do not exist on ``primary``."""
    missing = 0
    with primary.client(socket_timeout=10) as c:
        for i in range(0, len(keys), 1000):
            pipe = c.pipeline(transaction=False)
            for key in keys[i : i + 1000]:
                pipe.exists(key)
            missing += sum(1 for found in pipe.execute() if not found)
    return missing


def run_round(
    topo: Topology,
    scenario: Scenario,
    round_no: int,
    columns: Sequence[str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run one round; returns its JSON record (timeline and one entry per column)."""
    primary = topo.wait_healthy()
    replica = topo.other(primary)
    factories = topo.client_factories()
    writers = {
        c: Writer(c, factories[c], prefix=f"bench:{scenario.name}:{round_no}:{c}") for c in columns
    }
    record: dict[str, Any] = {
        "round": round_no,
        "old_primary": str(primary.address),
        "new_primary": str(replica.address),
    }
    watch = _PromotionWatch(replica)
    try:
        for w in writers.values():
            w.start()
        wait_until(
            lambda: all(w.acked_after(0) >= WARMUP_ACKS for w in writers.values()),
            20,
            what="every column to acknowledge its first writes",
        )
        watch.start()
        trigger_at = _trigger(topo, scenario, primary, record)
        new = topo.sentinels.wait_failover(GROUP, primary.address, timeout=30)
        switched_at = time.monotonic()
        if new.address != replica.address:
            raise RuntimeError(f"unexpected new primary {new.address}")
        if scenario.name == "kill":
            topo.wait_failover_settled(new)
            primary.restart()
            record["restarted_after_s"] = time.monotonic() - trigger_at
        rejoined_at = topo.wait_rejoined(primary, new)
        record["recovered"] = _wait_recovered(writers, rejoined_at)
    finally:
        watch.stop()
        attempts = {c: w.stop() for c, w in writers.items()}
    if scenario.name == "drain":
        undone = _cli(*_drain_args(topo, "undrain", primary))
        record["undrain_exit"] = undone.returncode
    record["promoted_after_s"] = (
        watch.promoted_at - trigger_at if watch.promoted_at is not None else None
    )
    record["sentinels_switched_after_s"] = switched_at - trigger_at
    record["rejoined_after_s"] = rejoined_at - trigger_at
    final = topo.wait_healthy()
    record["final_primary"] = str(final.address)
    record["columns"] = {}
    for c, w in writers.items():
        acked = [a.key for a in attempts[c] if a.error is None]
        result = column_round(attempts[c], trigger_at, _missing(final, acked), w.connections)
        record["columns"][c] = result.to_json()
    say(_one_line(scenario, round_no, record))
    return record


def _trigger(
    topo: Topology, scenario: Scenario, primary: RedisNode, record: dict[str, Any]
) -> float:
    """Break the primary the scenario's way; returns the trigger time (monotonic)."""
    if scenario.name == "kill":
        at = time.monotonic()
        primary.kill()
        return at
    if scenario.name == "failover":
        return _sentinel_failover(topo)
    if scenario.name == "drain":
        at = time.monotonic()
        done = _cli(*_drain_args(topo, "drain", primary))
        record["drain_s"] = time.monotonic() - at
        record["drain_exit"] = done.returncode
        record["drain_output"] = (done.stdout + done.stderr)[-2000:]
        if done.returncode != 0:
            raise RuntimeError(f"sentinel-xds drain failed ({done.returncode}): {done.stderr}")
        return at
    raise ValueError(f"unknown scenario {scenario.name!r}")


def _wait_recovered(writers: dict[str, Writer], rejoined_at: float) -> dict[str, bool]:
    """Wait until every writer has SETTLE_ACKS acks after the rejoin and after its last error."""

    def settled(w: Writer) -> bool:
        since = max(rejoined_at, w.last_error_at() or 0.0)
        return w.acked_after(since) >= SETTLE_ACKS

    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline and not all(settled(w) for w in writers.values()):
        time.sleep(0.05)
    return {c: settled(w) for c, w in writers.items()}


def _one_line(scenario: Scenario, round_no: int, record: dict[str, Any]) -> str:
    parts = [f"{scenario.name} #{round_no}:"]
    promoted = record.get("promoted_after_s")
    if promoted is not None:
        parts.append(f"promoted {promoted:.2f}s")
    for c, r in record["columns"].items():
        parts.append(f"{c} window {r['window_s']:.2f}s err {r['errors']} lost {r['lost']}")
    return " | ".join(parts)
