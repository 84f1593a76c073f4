"""The floor under ``bench/xds_bench.py``: grpcio aio alone, same message pattern, no xDS.

A server holds N streams; on a "change" every stream writes one message (the
Cluster), the client answers with two (ACK and the EDS request), the server
writes one more (the ClusterLoadAssignment) and the client ACKs it: the exact
exchange a failover causes per sidecar, with 200-byte payloads and no protocol
logic at all. Whatever this costs, the xDS server cannot go below on this
machine with grpcio's asyncio API::

    .venv/bin/python -m bench.xds_grpc_floor [--streams 1000] [--changes 5]

Prints one JSON object: control-plane CPU per change and publish-to-last-stream
times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

METHOD = "/floor.Floor/Stream"
CHANGE, EDS_REQUEST = b"change", b"eds"


def _identity(data: bytes) -> bytes:
    return data


async def serve(streams: int, changes: int) -> dict[str, Any]:
    inboxes: list[asyncio.Queue[bytes]] = []

    async def handler(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        inboxes.append(inbox)

        async def read() -> None:
            async for request in requests:
                inbox.put_nowait(request)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await inbox.get()
                if item == CHANGE:
                    await context.write(b"C" * 200)
                elif item == EDS_REQUEST:
                    await context.write(b"E" * 200)
        finally:
            reader.cancel()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "floor.Floor",
                {
                    "Stream": grpc.stream_stream_rpc_method_handler(
                        handler, request_deserializer=_identity, response_serializer=_identity
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.xds_grpc_floor",
        "--client",
        str(port),
        "--streams",
        str(streams),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdin is not None and client.stdout is not None
    await client.stdout.readline()  # connected
    lasts, cpus = [], []
    try:
        for _ in range(changes):
            await asyncio.sleep(0.5)
            cpu0, t0 = time.process_time(), time.monotonic()
            for inbox in inboxes:
                inbox.put_nowait(CHANGE)
            client.stdin.write(b"go\n")
            await client.stdin.drain()
            last = float(await client.stdout.readline())
            await asyncio.sleep(0.3)  # the ACKs still arriving cost CPU too
            lasts.append(last - t0)
            cpus.append(time.process_time() - cpu0)
    finally:
        client.kill()
        await client.wait()
        await server.stop(0)
    return {
        "streams": streams,
        "server_cpu_ms_per_change": round(statistics.median(cpus) * 1000),
        "change_to_last_stream_ms": {
            "median": round(statistics.median(lasts) * 1000, 1),
            "max": round(max(lasts) * 1000, 1),
        },
    }


async def client(port: int, streams: int) -> None:
    received: list[float] = []
    done = asyncio.Event()

    async def run(call: Any) -> None:
        while True:
            message = await call.read()
            if not isinstance(message, bytes):
                return
            if message[:1] == b"C":
                await call.write(b"ack")
                await call.write(EDS_REQUEST)
            else:
                received.append(time.monotonic())
                await call.write(b"ack")
                if len(received) >= streams:
                    done.set()

    tasks = []
    for _ in range(streams):
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        call = channel.stream_stream(
            METHOD, request_serializer=_identity, response_deserializer=_identity
        )()
        await call.write(b"hello")
        tasks.append(asyncio.create_task(run(call)))
    print("connected", flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        await done.wait()
        print(max(received), flush=True)
        received.clear()
        done.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--client", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.client:
        asyncio.run(client(args.client, args.streams))
    else:
        print(json.dumps(asyncio.run(serve(args.streams, args.changes))))


if __name__ == "__main__":
    main()
