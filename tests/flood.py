"""Hostile xDS clients: large Nodes, re-sent as fast as the server takes them.

Used by ``tests/integration/test_hostile_flood.py`` and ``bench/hostile_flood.py``
as a process of its own (so the flood's CPU never slows the process that
measures)::

    python -m tests.flood --target 127.0.0.1:18000 --clients 4 --seconds 60

Half the clients send oversized requests, on every request of a stream (the
server ends such a stream at once, so these clients reconnect and send it
again), taking turns, one stream each, with:

* what issue 12's attacker sent: a ~3 MB DiscoveryRequest whose Node metadata
  is a list of 280,000 numbers (now beyond twice the default request cap, so
  grpc itself refuses it, unparsed);
* a ~480 KB SotW request naming 160,000 one-byte resources, and a ~480 KB Delta
  request listing 55,000 initial resource versions: just under the default
  request cap (``xds.max_node_bytes`` + 256 KiB), so the server parses them, and
  over ``MAX_RESOURCE_NAMES``, so it refuses them before building any value.

The other half stay just under the limits: a ~235 KB Node with ~4,000
metadata values and a new node id on every stream (so every stream costs the
server one decode), re-sent on 50 requests per stream. Every 0.25 s a line of
counts goes to stdout (``flood.progress``, JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from redis_sentinel_watch import Address
from xds.lab.process import ManagedProcess

__all__ = [
    "FloodStats",
    "LatencyProbe",
    "flood_progress",
    "huge_request",
    "many_names_request",
    "many_versions_request",
    "near_cap_request",
    "start_flood",
]

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
RESEND_PER_STREAM = 50
#: a progress line this often (``at``: wall clock, comparable with the measuring process)
PROGRESS_INTERVAL_S = 0.25


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _request(node_id: str, metadata: dict[str, list[int] | list[str]]) -> bytes:
    """A serialized DiscoveryRequest (type_url=Cluster) with a Node carrying ``metadata``."""
    struct = struct_pb2.Struct()
    struct.update(metadata)
    node = _field(1, node_id.encode()) + _field(3, struct.SerializeToString())
    return _field(2, node) + _field(4, CLUSTER.encode())


def huge_request(node_id: str = "hostile") -> bytes:
    """Issue 12's request: ~3 MB, Node metadata a list of 280,000 numbers."""
    return _request(node_id, {"numbers": list(range(280_000))})


def many_names_request() -> bytes:
    """~480 KB SotW request (type_url=Cluster) naming 160,000 one-byte resources."""
    return _field(3, b"x") * 160_000 + _field(4, CLUSTER.encode())


def many_versions_request() -> bytes:
    """~480 KB Delta request (type_url=Cluster) with 55,000 distinct initial versions."""
    entries = b"".join(_field(5, _field(1, b"%x" % i)) for i in range(55_000))
    return entries + _field(2, CLUSTER.encode())


def near_cap_request(node_id: str) -> bytes:
    """~235 KB, 4,001 metadata values: under the default max_node_bytes and value limit."""
    return _request(node_id, {"strings": [f"{i:055d}" for i in range(4000)]})


@dataclass
class FloodStats:
    streams: int = 0
    requests: int = 0
    bytes: int = 0
    statuses: dict[str, int] | None = None

    def ended(self, code: grpc.StatusCode) -> None:
        if self.statuses is None:
            self.statuses = {}
        self.statuses[code.name] = self.statuses.get(code.name, 0) + 1


async def _client(target: str, huge: bool, deadline: float, stats: FloodStats, n: int) -> None:
    channel = grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
    )
    methods = {
        path: channel.stream_stream(path, request_serializer=bytes, response_deserializer=bytes)
        for path in (SOTW, DELTA)
    }
    oversized = (
        [
            (SOTW, huge_request(f"hostile-{n}")),
            (SOTW, many_names_request()),
            (DELTA, many_versions_request()),
        ]
        if huge
        else []
    )
    try:
        stream = 0
        while time.monotonic() < deadline:
            stream += 1
            if oversized:
                path, message = oversized[stream % len(oversized)]
            else:
                path, message = SOTW, near_cap_request(f"hostile-{n}-{stream}")
            call = methods[path]()
            stats.streams += 1
            try:
                for _ in range(RESEND_PER_STREAM):
                    await call.write(message)
                    stats.requests += 1
                    stats.bytes += len(message)
                await call.done_writing()
                async with asyncio.timeout(5):
                    while await call.read() is not grpc.aio.EOF:
                        pass
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError):
                pass
            finally:
                call.cancel()
            with contextlib.suppress(Exception):
                stats.ended(await call.code())
    finally:
        await channel.close()


async def flood(target: str, clients: int, seconds: float) -> FloodStats:
    stats = FloodStats()
    deadline = time.monotonic() + seconds
    tasks = [
        asyncio.create_task(_client(target, i % 2 == 0, deadline, stats, i)) for i in range(clients)
    ]
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=PROGRESS_INTERVAL_S)
        line = {"event": "flood.progress", "at": time.time(), **asdict(stats)}
        print(json.dumps(line), flush=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the xDS server")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    asyncio.run(flood(args.target, args.clients, args.seconds))
    return 0


# ----------------------------------------------------------------------------- harness


def start_flood(workdir: Path, target: Address, clients: int, seconds: float) -> ManagedProcess:
    """The flood as a process of its own (stopped by ``stop_all`` at the latest)."""
    argv = [sys.executable, "-m", "tests.flood", "--target", str(target)]
    argv += ["--clients", str(clients), "--seconds", str(seconds)]
    return ManagedProcess(argv, workdir, name="flood", cwd=Path(__file__).parents[1])


def flood_progress(process: ManagedProcess) -> dict[str, Any]:
    """The flood's last progress line (zeros before the first one)."""
    last: dict[str, Any] = {"at": 0.0, "streams": 0, "requests": 0, "bytes": 0, "statuses": None}
    with contextlib.suppress(OSError):
        for line in process.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == "flood.progress":
                    last = record
    return last


class LatencyProbe(threading.Thread):
    """GETs ``url`` every ``interval`` s until stopped; records each answer's latency
    (a failed or timed-out request counts as ``timeout`` seconds)."""

    def __init__(self, url: str, interval: float = 0.05, timeout: float = 5.0) -> None:
        if not url.startswith("http://"):
            raise ValueError(f"url must be http://, got {url!r}")
        super().__init__(daemon=True)
        self.url, self.interval, self.timeout = url, interval, timeout
        self.latencies: list[float] = []
        self.failures = 0
        self._stop_event = threading.Event()

    def __enter__(self) -> LatencyProbe:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop_event.set()
        self.join(timeout=self.timeout + 1)

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:  # noqa: S310
                    resp.read()
            except (urllib.error.URLError, OSError):
                self.failures += 1
                self.latencies.append(self.timeout)
            else:
                self.latencies.append(time.monotonic() - started)
            self._stop_event.wait(self.interval)

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] if xs else 0.0


if __name__ == "__main__":
    sys.exit(main())
