"""Hostile Sentinel replies over a real socket, through redis-py and the real watcher.

``tests/unit/test_replies.py`` checks the parser on malformed entries. What
it cannot show is the whole path: redis-py decoding a RESP reply nobody
expected, :class:`RedisSentinelIO` turning it into a view, and the
:class:`Watcher` deciding with it. Here three scripted Sentinels speak RESP2
on loopback; two of them turn hostile (missing fields, non-numeric ports,
entries of the wrong type, an unknown group, a reply that is not a list) while
the third alone names another primary. The watcher must keep the last good
primary, warn once per distinct problem, and keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from redis_sentinel_watch import Address, RedisSentinelIO, Topology, Watcher
from tests.support import wait_for

GROUP = "g"
P1 = Address("127.0.0.1", 7101)
P2 = Address("127.0.0.1", 7102)


class Error(str):
    """A RESP error reply."""


def encode(value: Any) -> bytes:
    if isinstance(value, Error):
        return b"-" + value.encode() + b"\r\n"
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str | bytes):
        data = value.encode() if isinstance(value, str) else value
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    raise TypeError(type(value))


def master_entry(name: str = GROUP, **over: Any) -> list[Any]:
    fields: dict[str, Any] = {
        "name": name,
        "ip": P1.host,
        "port": str(P1.port),
        "flags": "master",
        "config-epoch": "1",
    }
    fields.update(over)
    out: list[Any] = []
    for key, value in fields.items():
        if value is not None:
            out += [key, value]
    return out


@dataclass
class FakeSentinel:
    """A RESP2 server answering what a Sentinel is asked; ``masters`` is the scripted
    reply to SENTINEL MASTERS (anything :func:`encode` accepts)."""

    masters: Any = field(default_factory=lambda: [master_entry()])
    asked: int = 0  # SENTINEL MASTERS requests answered
    server: asyncio.Server | None = None
    address: Address = field(default_factory=lambda: Address("127.0.0.1", 0))

    async def start(self) -> FakeSentinel:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = Address("127.0.0.1", self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def answer(self, command: list[str]) -> Any:
        name = " ".join(command[:2]).upper()
        if name == "SENTINEL MASTERS":
            self.asked += 1
            return self.masters
        if name.startswith("SENTINEL"):
            return []  # REPLICAS, SENTINELS: none
        if command[0].upper() == "INFO":
            return "# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n"
        if command[0].upper() == "PING":
            return "PONG"
        if command[0].upper() == "CLIENT":
            return "OK"
        return Error(f"ERR unknown command '{command[0]}'")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                command = await read_command(reader)
                if command is None:
                    break
                if command[0].upper() == "SUBSCRIBE":
                    for i, channel in enumerate(command[1:], 1):
                        writer.write(encode(["subscribe", channel, i]))
                else:
                    writer.write(encode(self.answer(command)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_command(reader: asyncio.StreamReader) -> list[str] | None:
    line = await reader.readline()
    if not line:
        return None
    assert line.startswith(b"*"), line
    parts = []
    for _ in range(int(line[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2].decode())
    return parts


@pytest.fixture
async def sentinels() -> AsyncIterator[list[FakeSentinel]]:
    fakes = [await FakeSentinel().start() for _ in range(3)]
    yield fakes
    for fake in fakes:
        await fake.stop()


IGNORED, UNREACHABLE = "sentinel.reply_ignored", "sentinel.unreachable"
HOSTILE: list[tuple[str, Callable[[], Any], str, str]] = [
    ("missing ip", lambda: [master_entry(ip=None)], IGNORED, "missing field 'ip'"),
    ("port not a number", lambda: [master_entry(port="sixty")], IGNORED, "'port' is 'sixty'"),
    ("epoch not a number", lambda: [master_entry(**{"config-epoch": "x"})], IGNORED, "epoch"),
    ("entry not a list", lambda: [42], IGNORED, "expected a flat key/value list"),
    ("odd-length entry", lambda: [["name", GROUP, "ip"]], IGNORED, "flat key/value list"),
    ("not a master", lambda: [master_entry(flags="slave")], IGNORED, "do not include 'master'"),
    ("reply not a list", lambda: "surprise", IGNORED, "expected a list"),
    # an error reply makes the Sentinel count as unreachable for that poll
    ("error reply", lambda: Error("ERR no such command"), UNREACHABLE, "no such command"),
]


@pytest.mark.parametrize(
    ("case", "reply", "warning", "fragment"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
async def test_hostile_replies_are_ignored_with_a_warning_and_last_primary_kept(
    sentinels: list[FakeSentinel],
    case: str,
    reply: Callable[[], Any],
    warning: str,
    fragment: str,
) -> None:
    """Two of three Sentinels reply with garbage (and list a group the config does not
    name) while the third alone names a newer primary: the watcher keeps the last agreed
    primary, warns naming the problem once per Sentinel (not once per poll), warns once
    about the unconfigured group, and keeps polling."""
    io = RedisSentinelIO(0.5)
    watcher = Watcher(
        io, [s.address for s in sentinels], [GROUP], poll_interval_s=0.05, role_check=False
    )
    published: list[Topology] = []
    watcher.subscribe(lambda topology, _: published.append(topology))

    def primary() -> Address | None:
        group = published[-1].group(GROUP) if published else None
        return group.primary if group else None

    task = asyncio.create_task(watcher.run())
    try:
        with capture_logs() as logs:
            await wait_for(lambda: primary() == P1, 5, "first primary")
            hostile = reply()
            for fake in sentinels[:2]:
                fake.masters = (
                    [*hostile, master_entry("unconfigured")]
                    if isinstance(hostile, list)
                    else hostile
                )
            sentinels[2].masters = [
                master_entry(ip=P2.host, port=str(P2.port), **{"config-epoch": "2"})
            ]
            asked = sentinels[0].asked
            await wait_for(lambda: sentinels[0].asked >= asked + 10, 5, "ten more polls")
        assert primary() == P1, case
        assert not task.done(), "the watcher stopped"
        ignored = [e for e in logs if e["event"] == warning]
        assert {e["sentinel"] for e in ignored} == {str(s.address) for s in sentinels[:2]}
        assert len(ignored) == 2, ignored  # once per hostile Sentinel
        assert all(fragment in e["error"] for e in ignored), ignored
        unconfigured = [e for e in logs if e["event"] == "sentinel.group_ignored"]
        assert len(unconfigured) == (1 if isinstance(hostile, list) else 0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await io.aclose()
