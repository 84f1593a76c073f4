"""Drain rounds: writes lost, failed commands and write pause per planned switchover.

Goal (issue 5): over at least 10 rounds, 0 acknowledged writes lost, at most 1
failed command per client connection, write pause at most 300 ms.

Each round drains the current primary with ``sentinel-xds drain`` (in
process, the same code the CLI runs) while a client writes ``SET`` every 10
ms through a real Envoy sidecar on one connection, then undrains the old
node so the next round can promote it back. Measured per round:

* ``lost``: keys the client got ``OK`` for that are missing on the new primary;
* ``failed``: commands that returned an error;
* ``pause_ms``: how long writes were paused on the old primary (the drain's
  ``CLIENT PAUSE`` → ``CLIENT UNPAUSE``);
* ``client_gap_ms``: the longest time the client waited between two replies
  during the round (what the application felt);
* ``connection_kept``.

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.drain [--rounds 10] [--out bench/results/drain.json]
"""

from __future__ import annotations

import io
import itertools
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import cpus, one_group_lab, parser, result, write_result
from redis_sentinel_watch import Address
from tests.resp import ConnectionLost, OneConnection, RespError
from xds.lab import SentinelCluster, wait_until
from xds.ops.drain import DrainOptions, run_drain, run_undrain
from xds.ops.drain_plan import Budget

GROUP = "mymaster"
DEFAULT_OUT = Path(__file__).parent / "results" / "drain.json"


@dataclass
class Writes:
    acked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)  # monotonic time of each reply
    lost_connection: str | None = None


class TimedWriter(threading.Thread):
    """``SET b:<n>`` every 10 ms on one connection; records when each reply came."""

    def __init__(self, listen: Address) -> None:
        super().__init__(daemon=True)
        self.conn = OneConnection(listen.host, listen.port, timeout=30)
        self.w = Writes()
        self.stopping = threading.Event()
        self.n = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            self.n += 1
            key = f"b:{self.n}"
            try:
                reply = self.conn.command("SET", key, str(self.n))
                if reply == "OK":
                    self.w.acked.append(key)
            except RespError as exc:
                self.w.errors.append(str(exc))
            except ConnectionLost as exc:
                self.w.lost_connection = str(exc)
                return
            self.w.replies.append(time.monotonic())
            self.stopping.wait(0.01)

    def stop(self) -> Writes:
        self.stopping.set()
        self.join(timeout=40)
        self.conn.close()
        return self.w


@dataclass
class Round:
    n: int
    old: str
    new: str | None
    outcome: str
    lost: int
    failed: int
    errors: list[str]
    pause_ms: float | None
    client_gap_ms: float
    connection_kept: bool
    drain_ms: float
    steps_ms: dict[str, float]  # drain step → ms after CLIENT PAUSE (where the pause went)


def one_round(n: int, cluster: SentinelCluster, listen: Address, admin: str) -> Round:
    old = cluster.current_primary(GROUP).address
    opts = DrainOptions(
        group=GROUP,
        node=old,
        sentinels=tuple(cluster.sentinel_addresses),
        admins=(admin,),
        budget=Budget(pause_ms=5000, margin_ms=500),
    )
    writer = TimedWriter(listen)
    writer.start()
    wait_until(lambda: len(writer.w.acked) >= 30, 10, what="writes before the drain")
    started = time.monotonic()
    log = io.StringIO()
    result = run_drain(opts, out=log)
    if result.outcome != "switched":
        print(log.getvalue(), file=sys.stderr)
    drain_ms = (time.monotonic() - started) * 1000
    before = len(writer.w.acked)
    wait_until(lambda: len(writer.w.acked) >= before + 30, 15, what="writes after the drain")
    w = writer.stop()
    new = result.new_primary
    lost = 0
    if new is not None:
        with cluster.node(new).client() as c:
            pipe = c.pipeline(transaction=False)
            for k in w.acked:
                pipe.exists(k)
            lost = sum(1 for present in pipe.execute() if not present)
        with cluster.node(new).client() as c:
            c.flushall()  # keep rounds independent
    window = [t for t in w.replies if t >= started - 0.05]
    gaps = [b - a for a, b in itertools.pairwise(window)]
    undrain = run_undrain(opts, out=io.StringIO())
    if undrain.exit_code != 0:
        raise RuntimeError(f"undrain failed: {undrain.message}")
    return Round(
        n,
        str(old),
        str(new) if new else None,
        result.outcome,
        lost,
        len(w.errors),
        w.errors,
        result.pause_ms,
        round(max(gaps, default=0.0) * 1000, 1),
        w.lost_connection is None,
        round(drain_ms, 1),
        _since_pause(result.steps),
    )


def _since_pause(steps: list[dict[str, Any]]) -> dict[str, float]:
    at = {s["event"]: float(s["ms"]) for s in steps}
    zero = at.get("drain.paused")
    if zero is None:
        return {}
    keep = (
        "drain.replicas_synced",
        "drain.failover_sent",
        "drain.promoted",
        "drain.sidecars_acked",
        "drain.unpaused",
    )
    return {k.removeprefix("drain."): round(at[k] - zero, 1) for k in keep if k in at}


def summarize(rounds: list[Round]) -> dict[str, Any]:
    pauses = [r.pause_ms for r in rounds if r.pause_ms is not None]
    gaps = [r.client_gap_ms for r in rounds]
    return {
        "rounds": len(rounds),
        "switched": sum(1 for r in rounds if r.outcome == "switched"),
        "writes_lost_total": sum(r.lost for r in rounds),
        "failed_max_per_round": max((r.failed for r in rounds), default=0),
        "connections_kept": all(r.connection_kept for r in rounds),
        "pause_ms_median": round(statistics.median(pauses), 1) if pauses else None,
        "pause_ms_min": min(pauses, default=None),
        "pause_ms_max": max(pauses, default=None),
        "pause_ms_over_300": sum(1 for p in pauses if p > 300),
        "promoted_ms_median": _median([r.steps_ms.get("promoted") for r in rounds]),
        "sidecars_acked_ms_median": _median([r.steps_ms.get("sidecars_acked") for r in rounds]),
        "client_gap_ms_median": round(statistics.median(gaps), 1) if gaps else None,
        "client_gap_ms_max": max(gaps, default=None),
        "goal": "0 lost, <= 1 failed per connection, pause <= 300 ms",
        "goal_met": bool(rounds)
        and all(r.outcome == "switched" for r in rounds)
        and sum(r.lost for r in rounds) == 0
        and max(r.failed for r in rounds) <= 1
        and max(pauses) <= 300,
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def main(argv: list[str] | None = None) -> int:
    p = parser("bench.drain", __doc__, rounds=10)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    rounds: list[Round] = []
    with one_group_lab("bench-drain-", GROUP) as lab:
        lab.cp.start_sidecar(lab.workdir, "bench-sidecar", lab.listen)
        for n in range(1, args.rounds + 1):
            r = one_round(n, lab.cluster, lab.listen, f"http://{lab.cp.admin}")
            rounds.append(r)
            print(
                f"round {n:2}: {r.outcome:<9} lost {r.lost}  failed {r.failed}  "
                f"pause {r.pause_ms} ms  client gap {r.client_gap_ms} ms  "
                f"drain {r.drain_ms:.0f} ms  {r.steps_ms}",
                flush=True,
            )
    summary = summarize(rounds)
    report = result("drain", {"python": platform.python_version(), "cpus": cpus()}, summary, rounds)
    write_result(args.out, report, summary)
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
