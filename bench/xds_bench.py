"""xDS server benchmarks: a thousand sidecars on two cores (issue "xDS server: full protocol").

Run (takes a few minutes; writes ``bench/results/xds.json``)::

    .venv/bin/python -m bench.xds_bench [--streams 1000] [--changes 20] [--envoys 10]

This process is the control plane: the real ``XdsServer``, snapshot cache and
profile rule the service uses, with logging at warning level (as in
production, per-stream push/ACK lines are debug). A "topology change" is a
new primary published to the cache, exactly what the service does when the
watcher reports a failover; Sentinel itself is left out so the numbers are the
xDS server's. The load generator (``bench/xds_loadgen.py``) runs in its own
process, one HTTP/2 connection per stream, each stream sending the real
captured Envoy first request (``bench/fixtures``).

Measured:

* parse: one real Envoy first request, betterproto2 vs the protobuf runtime
  used on the hot path (``xds/ads/discovery_request.py``);
* per mode (SotW, Delta): the reconnect storm (all streams connect at once
  and get CDS, EDS and LDS: wall time and control-plane CPU seconds), then
  ``--changes`` topology changes, each timed from publish to the moment the
  *last* stream received the new ClusterLoadAssignment (median and p99 over
  changes, plus the per-stream median);
* control-plane RSS at 0 streams, at N streams, and at 0 after each of 10
  connect/disconnect cycles;
* with ``--envoys`` real Envoy sidecars: publish to all of them ACKing the new
  Cluster and ClusterLoadAssignment, median and p99 over changes;
* the grpcio floor (``bench/xds_grpc_floor.py``): the same message exchange
  with no xDS logic at all, to show what grpcio's asyncio API costs by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import structlog

from bench.xds_grpc_floor import serve as floor
from redis_sentinel_watch import Address
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars, SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT
from xds.lab import EnvoyProcess, find_envoy, free_port, stop_all
from xds.resources.bootstrap import bootstrap_yaml
from xds.resources.profiles import Profiles
from xds.resources.redis_group import GroupSpec, eds_service_name
from xds.service.config import parse_config

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "xds.json"
FIXTURE = ROOT / "fixtures" / "envoy-first-request.bin"
GROUP = "mymaster"
LISTEN = Address("127.0.0.1", 16379)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def rss_mb_after_trim() -> float | None:
    """RSS once glibc has returned its free pages (``malloc_trim(0)``): what the process
    really holds. Raw RSS after a connect storm also counts memory gRPC's threads freed
    but the allocator kept resident, which moves with allocation patterns (a change
    that parses less, e.g. one Node decode per distinct Node instead of per stream,
    showed +26 MB raw and the same live memory). None where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return rss_mb()


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def primary(i: int) -> Address:
    return Address("127.0.0.1", 20000 + i)


class Plane:
    def __init__(self) -> None:
        cfg = parse_config(
            {
                "sentinels": ["127.0.0.1:26379"],
                "groups": {GROUP: {"listen": str(LISTEN)}},
                "xds": {"listen": "127.0.0.1:1", "max_streams": 100_000},
            }
        )
        self.profiles = Profiles(cfg.groups)
        self.cache = SnapshotCache(self.profiles.of)
        # every load-generator stream comes from 127.0.0.1: no per-peer limit here
        self.server = XdsServer(
            self.cache, Sidecars(), max_streams=100_000, max_streams_per_peer=None
        )
        self.gen = 0

    def publish(self) -> str:
        """A failover: the next primary. Returns the new EDS name."""
        self.gen += 1
        specs = (GroupSpec(GROUP, LISTEN, primary(self.gen)),)
        self.cache.publish(specs, lambda p: self.profiles.snapshot(p, specs))  # type: ignore[arg-type]
        return eds_service_name(GROUP, primary(self.gen))


class LoadGen:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int, mode: str, streams: int) -> LoadGen:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.xds_loadgen",
            "--target",
            f"127.0.0.1:{port}",
            "--mode",
            mode,
            "--streams",
            str(streams),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT.parent,
        )
        return cls(proc)

    async def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 300)
        if not line:
            raise RuntimeError(f"load generator exited during {cmd}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def quit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b'{"cmd": "quit"}\n')
        await self.proc.stdin.drain()
        await asyncio.wait_for(self.proc.wait(), 60)


async def bench_mode(
    plane: Plane, port: int, mode: str, streams: int, changes: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"streams": streams}
    gen = await LoadGen.start(port, mode, streams)
    try:
        cpu0 = cpu_s()
        storm = await gen.ask(cmd="connect")
        cpu1 = cpu_s()
        out["reconnect_storm"] = {
            "all_served_s": round(storm["storm_done"] - storm["storm_started"], 2),
            "control_plane_cpu_s": round(cpu1 - cpu0, 2),
        }
        out["rss_mb_at_streams"] = rss_mb()
        out["rss_mb_at_streams_after_trim"] = rss_mb_after_trim()
        lasts, medians = [], []
        for _ in range(changes):
            await asyncio.sleep(0.2)  # let ACKs of the previous change drain
            t0 = time.monotonic()
            name = plane.publish()
            got = await gen.ask(cmd="wait", name=name)
            times = [t - t0 for t in got["times"]]
            if len(times) < streams:
                raise RuntimeError(f"{mode}: only {len(times)} of {streams} streams got {name}")
            lasts.append(max(times))
            medians.append(statistics.median(times))
        out["change_to_last_stream_ms"] = {
            "median": ms(statistics.median(lasts)),
            "p99": ms(pct(lasts, 99)),
            "max": ms(max(lasts)),
        }
        out["change_to_stream_median_ms"] = ms(statistics.median(medians))
        await gen.ask(cmd="disconnect")
        await plane.server.wait_idle(60)
        cycles = []
        if mode == "sotw":
            for _ in range(10):
                await gen.ask(cmd="connect")
                await gen.ask(cmd="disconnect")
                await plane.server.wait_idle(60)
                cycles.append(rss_mb())
            out["rss_mb_at_0_after_each_cycle"] = cycles
    finally:
        await gen.quit()
    return out


async def bench_envoys(plane: Plane, port: int, count: int, changes: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="xds-bench-envoys-"))
    envoys: list[EnvoyProcess] = []
    try:
        for i in range(count):
            admin = free_port()
            text = bootstrap_yaml(
                f"bench-envoy-{i}",
                [Address("127.0.0.1", port)],
                admin=Address("127.0.0.1", admin),
            )
            envoys.append(
                await asyncio.to_thread(EnvoyProcess.start, workdir, text, admin, name=f"e{i}")
            )
        sidecars = plane.server.sidecars

        def all_on(name: str) -> bool:
            scs = sidecars.all()
            return len(scs) == count and all(
                s.types.get(CLUSTER) is not None
                and s.types[CLUSTER].state() is SyncState.SYNCED
                and s.types.get(ENDPOINT) is not None
                and s.types[ENDPOINT].state() is SyncState.SYNCED
                and name in s.types[ENDPOINT].sent_names
                for s in scs
            )

        first = eds_service_name(GROUP, primary(plane.gen))
        if not await sidecars.wait_for(lambda: all_on(first), 60):
            raise RuntimeError("Envoys did not all sync the initial snapshot")
        lasts = []
        for _ in range(changes):
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            name = plane.publish()
            if not await sidecars.wait_for(lambda n=name: all_on(n), 30):  # type: ignore[misc]
                raise RuntimeError(f"Envoys did not all ACK {name}")
            acked = [
                max(s.types[CLUSTER].acked_at or 0.0, s.types[ENDPOINT].acked_at or 0.0)
                for s in sidecars.all()
            ]
            lasts.append(max(acked) - t0)
        return {
            "envoys": count,
            "change_to_all_acked_ms": {
                "median": ms(statistics.median(lasts)),
                "p99": ms(pct(lasts, 99)),
                "max": ms(max(lasts)),
            },
        }
    finally:
        for e in envoys:
            await asyncio.to_thread(e.stop)


def bench_parse() -> dict[str, Any]:
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest  # noqa: PLC0415

    from xds.ads.discovery_request import parse_sotw  # noqa: PLC0415

    raw = FIXTURE.read_bytes()

    def per_call(fn: Any, n: int) -> float:
        fn(raw)
        t = time.perf_counter()
        for _ in range(n):
            fn(raw)
        return (time.perf_counter() - t) / n

    return {
        "first_request_bytes": len(raw),
        "betterproto2_ms": round(per_call(DiscoveryRequest.FromString, 20) * 1000, 2),
        "protobuf_upb_ms": round(per_call(parse_sotw, 2000) * 1000, 4),
    }


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    envoy = subprocess.run(
        [str(find_envoy()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "envoy-data-plane": metadata.version("envoy-data-plane"),
        "envoy": envoy.split("version:")[-1].strip(),
        # other work on the machine skews every number; read them with this in mind
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plane = Plane()
    plane.publish()
    port = await plane.server.start("127.0.0.1", 0)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "parse": bench_parse(),
        "rss_mb_at_0_streams": rss_mb(),
    }
    try:
        for mode in ("sotw", "delta"):
            print(f"{mode}: {args.streams} streams ...", flush=True)
            result[mode] = await bench_mode(plane, port, mode, args.streams, args.changes)
            print(json.dumps(result[mode]), flush=True)
        print(f"grpcio floor: {args.streams} streams, no xDS ...", flush=True)
        result["grpcio_floor"] = await floor(args.streams, 5)
        print(json.dumps(result["grpcio_floor"]), flush=True)
        if args.envoys:
            print(f"{args.envoys} Envoy sidecars ...", flush=True)
            result["envoy_sidecars"] = await bench_envoys(plane, port, args.envoys, args.changes)
            print(json.dumps(result["envoy_sidecars"]), flush=True)
    finally:
        await plane.server.stop(1)
    result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--envoys", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        result = asyncio.run(run(args))
    finally:
        stop_all()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
