"""/healthz latency with and without a /status flood on the admin port, side by side.

Goal (issue 12): while 500 clients flood ``/status`` on new connections,
``/healthz`` answers within 100 ms (the median of each round's probes) and no
probe waits for a dropped SYN. One admin server (``tests.admin_flood``: a real
``AdminServer`` in a thread with its own loop, serving a 200-sidecar status
document); rounds alternate *quiet* (probes only) and *flood* (the flood
process running); 21 ``/healthz`` probes per round, each on a new connection.
The test (``tests/component/test_admin_flood.py``) asserts only that nothing is
dropped; the speed lives here.

Run on demand (not part of the test suite)::

    .venv/bin/python -m bench.admin_flood [--rounds 5]
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.common import RESULTS_DIR, machine, parser, result, stats, write_result
from tests.admin_flood import (
    BURST,
    HEALTHZ_TARGET_S,
    PROBES,
    ServerThread,
    flooding,
    healthz,
    stop_flood,
)


@dataclass(frozen=True)
class Round:
    mode: str  # quiet | flood
    healthz_ms: list[float]
    median_ms: float
    max_ms: float
    flood_answered: int


def one_round(port: int, mode: str) -> Round:
    if mode == "quiet":
        probes = [healthz(port) for _ in range(PROBES)]
        answered = 0
    else:
        with flooding(port) as flood:
            probes = [healthz(port) for _ in range(PROBES)]
            summary = stop_flood(flood)
        answered = int(summary["answered"])  # type: ignore[call-overload]
    ms = [round(p * 1000, 2) for p in probes]
    return Round(mode, ms, round(statistics.median(ms), 2), max(ms), answered)


def main() -> int:
    p = parser("bench.admin_flood", __doc__, rounds=5, rounds_help="rounds per mode")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "admin_flood.json")
    args = p.parse_args()
    rounds: list[Round] = []
    with ServerThread() as port:
        for _ in range(args.rounds):
            for mode in ("quiet", "flood"):
                rounds.append(one_round(port, mode))
    summary = {}
    for mode in ("quiet", "flood"):
        mine = [r for r in rounds if r.mode == mode]
        summary[mode] = {
            "rounds": len(mine),
            "healthz_median_ms": stats([r.median_ms for r in mine]),
            "healthz_max_ms": stats([r.max_ms for r in mine]),
        }
    flood_median = summary["flood"]["healthz_median_ms"]["median"]
    summary["goal_met"] = bool(flood_median is not None and flood_median <= HEALTHZ_TARGET_S * 1000)
    doc = result(
        "admin_flood",
        machine("shared machine: other work may have run at the same time"),
        summary,
        rounds,
        setup=f"AdminServer in a thread (200-sidecar /status); flood: {BURST} clients in a "
        f"process of their own, GET /status on new connections; {PROBES} /healthz probes a round",
        goals="/healthz median within 100 ms under the flood; no probe after a dropped SYN",
    )
    write_result(args.out, doc, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
