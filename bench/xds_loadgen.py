"""Load generator for ``bench/xds_bench.py``: many lightweight ADS clients in one process.

Each stream behaves like an Envoy sidecar on the wire, cheaply: it opens its
own HTTP/2 connection, sends a first request carrying the real captured Envoy
Node (~60 KB, ``bench/fixtures``), ACKs every response, and when a Cluster
names a new ClusterLoadAssignment (the EDS name embeds the primary) it asks
for that name, as Envoy does while warming the replaced cluster. Responses are
never fully parsed: only the top-level ``type_url`` and ``nonce`` fields are
read, and EDS names are found by pattern, so the generator stays light next
to the server under test.

It is driven over stdin/stdout with JSON lines (one command, one answer)::

    {"cmd": "connect"}        → {"served_s": ..., "storm_started": t, "storm_done": t}
    {"cmd": "wait", "name": N} → {"times": [monotonic receive time per stream]}
    {"cmd": "disconnect"}     → {"ok": true}
    {"cmd": "quit"}

Times are ``time.monotonic()``, which on Linux is one clock for every
process, so the bench compares them with its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from xds.ads.typeurls import CLUSTER, ENDPOINT, LISTENER
from xds.ads.wire import len_field

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
EDS_NAME = re.compile(rb"redis/[^/\x00-\x20]+/[0-9.]+:[0-9]+")
FIXTURE = Path(__file__).parent / "fixtures" / "envoy-first-request.bin"


def _identity(data: bytes) -> bytes:
    return data


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def top_fields(buf: bytes, wanted: set[int]) -> dict[int, bytes]:
    """The last value of each wanted length-delimited top-level field (no full parse)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            size, i = _varint(buf, i)
            if number in wanted:
                out[number] = buf[i : i + size]
            i += size
        elif wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")
    return out


def node_bytes(first_request: bytes) -> bytes:
    """The serialized Node (field 2) of a captured DiscoveryRequest."""
    return top_fields(first_request, {2})[2]


def sotw_request(type_url: str, names: list[str], version: str, nonce: str) -> bytes:
    parts = [len_field(1, version.encode())] if version else []
    parts.extend(len_field(3, n.encode()) for n in names)
    parts.append(len_field(4, type_url.encode()))
    if nonce:
        parts.append(len_field(5, nonce.encode()))
    return b"".join(parts)


def delta_request(
    type_url: str,
    subscribe: list[str] = (),  # type: ignore[assignment]
    unsubscribe: list[str] = (),  # type: ignore[assignment]
    nonce: str = "",
    node: bytes = b"",
) -> bytes:
    parts = [len_field(1, node)] if node else []
    parts.append(len_field(2, type_url.encode()))
    parts.extend(len_field(3, n.encode()) for n in subscribe)
    parts.extend(len_field(4, n.encode()) for n in unsubscribe)
    if nonce:
        parts.append(len_field(6, nonce.encode()))
    return b"".join(parts)


class Stream:
    """One sidecar-like ADS stream."""

    def __init__(self, target: str, mode: str, first: bytes, node: bytes, gen: LoadGen) -> None:
        self.target, self.mode, self.first, self.node, self.gen = target, mode, first, node, gen
        self.channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.task: asyncio.Task[None] | None = None
        self.eds_name = ""
        self.eds_nonce = ""
        self.eds_version = ""
        self.served = asyncio.get_running_loop().create_future()
        self.lds_requested = False

    async def start(self) -> None:
        self.channel = grpc.aio.insecure_channel(
            self.target, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        method = SOTW if self.mode == "sotw" else DELTA
        self.call = self.channel.stream_stream(
            method, request_serializer=_identity, response_deserializer=_identity
        )()
        if self.mode == "sotw":
            await self.call.write(self.first)
        else:
            await self.call.write(delta_request(CLUSTER, node=self.node))
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                raw = await self.call.read()
                if not isinstance(raw, bytes):
                    return
                now = time.monotonic()
                await self._on_response(raw, now)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            return

    async def _on_response(self, raw: bytes, now: float) -> None:
        fields = top_fields(raw, {1, 4, 5})
        type_url = fields.get(4, b"").decode()
        nonce = fields.get(5, b"").decode()
        version = fields.get(1, b"").decode()
        sotw = self.mode == "sotw"
        if type_url == CLUSTER:
            await self.call.write(
                sotw_request(CLUSTER, [], version, nonce)
                if sotw
                else delta_request(CLUSTER, nonce=nonce)
            )
            found = EDS_NAME.search(raw)
            if found and found.group().decode() != self.eds_name:
                old, self.eds_name = self.eds_name, found.group().decode()
                if sotw:
                    req = sotw_request(ENDPOINT, [self.eds_name], self.eds_version, self.eds_nonce)
                else:
                    req = delta_request(ENDPOINT, [self.eds_name], [old] if old else [])
                await self.call.write(req)
        elif type_url == ENDPOINT:
            self.eds_nonce, self.eds_version = nonce, version
            await self.call.write(
                sotw_request(ENDPOINT, [self.eds_name], version, nonce)
                if sotw
                else delta_request(ENDPOINT, nonce=nonce)
            )
            for name in EDS_NAME.findall(raw):
                self.gen.received(name.decode(), now)
            if not self.lds_requested:
                self.lds_requested = True
                await self.call.write(
                    sotw_request(LISTENER, [], "", "") if sotw else delta_request(LISTENER)
                )
        elif type_url == LISTENER:
            await self.call.write(
                sotw_request(LISTENER, [], version, nonce)
                if sotw
                else delta_request(LISTENER, nonce=nonce)
            )
            if not self.served.done():
                self.served.set_result(now)

    async def close(self) -> None:
        if self.call is not None:
            self.call.cancel()
        if self.task is not None:
            self.task.cancel()
        if self.channel is not None:
            await self.channel.close()


class LoadGen:
    def __init__(self, target: str, mode: str, count: int) -> None:
        self.target, self.mode, self.count = target, mode, count
        self.first = FIXTURE.read_bytes()
        self.node = node_bytes(self.first)
        self.streams: list[Stream] = []
        self.times: dict[str, list[float]] = {}
        self.complete: dict[str, asyncio.Event] = {}

    def received(self, name: str, now: float) -> None:
        times = self.times.setdefault(name, [])
        times.append(now)
        if len(times) >= self.count:
            self.complete.setdefault(name, asyncio.Event()).set()

    async def connect(self) -> dict[str, Any]:
        started = time.monotonic()
        self.streams = [
            Stream(self.target, self.mode, self.first, self.node, self) for _ in range(self.count)
        ]
        await asyncio.gather(*(s.start() for s in self.streams))
        served = await asyncio.wait_for(asyncio.gather(*(s.served for s in self.streams)), 120)
        return {"storm_started": started, "storm_done": max(served)}

    async def wait(self, name: str, timeout: float = 60) -> dict[str, Any]:
        done = self.complete.setdefault(name, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        return {"times": self.times.get(name, [])}

    async def disconnect(self) -> dict[str, Any]:
        await asyncio.gather(*(s.close() for s in self.streams))
        self.streams = []
        self.times.clear()
        self.complete.clear()
        return {"ok": True}


async def main_async(args: argparse.Namespace) -> None:
    gen = LoadGen(args.target, args.mode, args.streams)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "connect":
            answer = await gen.connect()
        elif cmd["cmd"] == "wait":
            answer = await gen.wait(cmd["name"])
        elif cmd["cmd"] == "disconnect":
            answer = await gen.disconnect()
        else:
            answer = {"error": f"unknown command {cmd['cmd']!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    await gen.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--mode", choices=["sotw", "delta"], required=True)
    parser.add_argument("--streams", type=int, default=1000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
