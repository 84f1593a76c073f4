"""Drain notices through the whole service: scripted Sentinels, the real admin listener.

A notice is accepted only for a node the group has per the latest topology,
and the failover it labels is ``trigger=drain`` only while it is live: a
failover after it expired (an injected clock, no sleeping) is recorded as
unplanned, in ``/events`` and in ``sentinel_xds_failovers_total``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from redis_sentinel_watch import Address, FakeSentinelIO
from tests.support import wait_for
from xds.lab import free_port
from xds.ops.cli import main
from xds.service.app import Service
from xds.service.config import ConfigError, parse_config
from xds.service.notices import MAX_NOTICE_TTL_S, DrainNotices

SENTINEL = Address("127.0.0.1", 26998)
OLD = Address("127.0.0.1", 7401)
NEW = Address("127.0.0.1", 7402)
STRANGER = Address("127.0.0.1", 7499)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _config(admin: str) -> dict[str, Any]:
    return {
        "sentinels": [str(SENTINEL)],
        "groups": {"g": {"listen": "127.0.0.1:6392"}},
        "xds": {"listen": f"127.0.0.1:{free_port()}"},
        "admin": {"listen": admin},
        "watch": {"poll_interval_s": 0.05},
    }


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, FakeSentinelIO, Clock]]:
    io = FakeSentinelIO()
    io.say(SENTINEL, "g", OLD, epoch=1, replicas=[NEW])
    io.set_role(OLD, "master")
    svc = Service(parse_config(_config(f"127.0.0.1:{free_port()}")), io=io)
    clock = Clock()
    svc.timeline.notices = DrainNotices(clock)
    await svc.startup()
    try:
        await wait_for(lambda: svc.cache.current() is not None, 10, "first snapshot")
        yield svc, io, clock
    finally:
        await svc.shutdown(0)


async def _post_notice(svc: Service, node: Address, group: str = "g") -> tuple[int, Any]:
    body = {"group": group, "node": str(node), "ttl_s": 30}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{svc.admin.port}/notices/drain", json=body) as resp,
    ):
        return resp.status, await resp.json()


def _fail_over(io: FakeSentinelIO, epoch: int) -> None:
    """kill -9 of OLD as the watcher sees it: Sentinel now names NEW, which says master."""
    io.set_role(OLD, "down")
    io.set_role(NEW, "master")
    io.say(SENTINEL, "g", NEW, epoch=epoch, replicas=[OLD])


async def test_notices_only_for_nodes_the_group_has(
    service: tuple[Service, FakeSentinelIO, Clock],
) -> None:
    svc, _, _ = service
    assert (await _post_notice(svc, STRANGER))[0] == 422
    assert (await _post_notice(svc, OLD, group="nope"))[0] == 422
    assert len(svc.timeline.notices) == 0
    assert await _post_notice(svc, NEW) == (202, {"ok": True})  # a known replica
    assert await _post_notice(svc, OLD) == (202, {"ok": True})  # the primary; replaces it
    assert len(svc.timeline.notices) == 1


async def test_failover_after_an_expired_notice_is_unplanned(
    service: tuple[Service, FakeSentinelIO, Clock],
) -> None:
    svc, io, clock = service
    assert (await _post_notice(svc, OLD))[0] == 202
    clock.now += MAX_NOTICE_TTL_S + 1
    _fail_over(io, epoch=2)
    await wait_for(lambda: len(svc.failovers) == 1, 10, "the failover to be recorded")
    assert svc.failovers[0].trigger in ("sentinel-event", "reconcile")
    assert 'sentinel_xds_failovers_total{trigger="drain"} 0.0' in svc.metrics.render().decode()


async def test_failover_under_a_live_notice_is_a_drain(
    service: tuple[Service, FakeSentinelIO, Clock],
) -> None:
    svc, io, clock = service
    assert (await _post_notice(svc, OLD))[0] == 202
    clock.now += 5
    _fail_over(io, epoch=2)
    await wait_for(lambda: len(svc.failovers) == 1, 10, "the failover to be recorded")
    assert svc.failovers[0].trigger == "drain"


def test_service_refuses_non_loopback_admin_without_token() -> None:
    """The config refuses it (its own test); the service checks again, before binding
    anything, so no path into Service exposes /status anonymously."""
    config = parse_config(_config("127.0.0.1:9102"))
    exposed = dataclasses.replace(config, admin_listen=Address("0.0.0.0", 9102))
    with pytest.raises(ConfigError) as err:
        Service(exposed, io=FakeSentinelIO())
    assert err.value.field == "admin.listen" and "admin.token_file" in str(err.value)


async def test_cli_sends_the_token_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sentinel-xds events --config`` reads admin.token_file and is let in; the same
    command with a config naming another token is refused (403), and says so."""
    token_file = tmp_path / "admin.token"
    token_file.write_text("cli-token-0123456789abcdef\n")
    token_file.chmod(0o600)
    text = _config(f"127.0.0.1:{free_port()}")
    text["admin"] = {"listen": text["admin"]["listen"], "token_file": str(token_file)}
    config_file = tmp_path / "cp.yaml"
    config_file.write_text(yaml.safe_dump(text))
    io = FakeSentinelIO()
    io.say(SENTINEL, "g", OLD, epoch=1, replicas=[NEW])
    io.set_role(OLD, "master")
    svc = Service(parse_config(text), io=io)
    await svc.startup()
    try:
        assert await asyncio.to_thread(main, ["events", "--config", str(config_file)]) == 0
        assert "control plane http://127.0.0.1" in capsys.readouterr().out
        other = tmp_path / "other.token"
        other.write_text("another-token-0123456789\n")
        other.chmod(0o600)
        text["admin"]["token_file"] = str(other)
        config_file.write_text(yaml.safe_dump(text))
        assert await asyncio.to_thread(main, ["events", "--config", str(config_file)]) == 1
        assert "HTTP 403" in capsys.readouterr().err
    finally:
        await svc.shutdown(0)
