"""Sentinel faults with real Redis, Sentinels, the control plane and Envoy.

Each test breaks something real (kill -9 the primary, kill the failover leader
right after it promoted the replica, restart a Sentinel that missed a failover
and an old primary that claims master, stop every Sentinel, trigger
``SENTINEL FAILOVER``) while a client writes through the sidecar, and checks
what can be observed from outside: Envoy's /clusters, what the Sentinels and
Redis nodes answer, what the client was told, and the control plane's /status.
Times are measured and attached to the report (``record_property``), never
asserted: speed targets live in ``bench/failover_kill.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from redis_sentinel_watch import Address, Credentials, Health, RedisSentinelIO, WatchError
from redis_sentinel_watch.auth import Secret
from tests.integration.conftest import GROUP, Stack, start_stack
from tests.integration.watchers import EnvoyWatch, FirstTime
from tests.integration.writer import Writer
from xds.lab import RedisNode, SentinelNode, wait_until
from xds.service.admin_documents import GroupState

pytestmark = pytest.mark.integration


def says_master(node: RedisNode) -> Callable[[], bool]:
    """A predicate on one long-lived connection (2 ms polling must not reconnect each time)."""
    client = node.client(socket_timeout=0.5, socket_connect_timeout=0.5)
    return lambda: str(client.execute_command("ROLE")[0]) == "master"


def majority_names(stack: Stack, node: Address) -> Callable[[], bool]:
    return lambda: stack.cluster._votes(GROUP).get(node, 0) >= stack.cluster.majority


def missing_on(node: RedisNode, keys: list[str]) -> list[str]:
    with node.client() as c:
        pipe = c.pipeline(transaction=False)
        for k in keys:
            pipe.exists(k)
        return [k for k, present in zip(keys, pipe.execute(), strict=True) if not present]


def group_status(stack: Stack) -> GroupState:
    group = stack.control_plane.status().group(GROUP)
    assert group is not None, f"/status has no group {GROUP}"
    return group


def test_kill_primary_sidecar_switches_once_replica_reports_master(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    """kill -9 of the primary: Envoy goes from the old primary straight to the replica, and
    when it does the replica already answers ROLE master; the client's connection is kept
    and its writes land on the new primary. The delay from "replica says master" to "Envoy
    routes to it" and the Sentinel majority's lag are recorded, not asserted."""
    old = stack.primary_address()
    replica = stack.cluster.replicas[GROUP][0]
    role_at_switch: list[str] = []

    def on_envoy_change(hosts: list[Address]) -> None:
        if hosts == [replica.address]:
            role_at_switch.append(replica.role())

    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the kill")
    with (
        EnvoyWatch(stack, on_envoy_change) as envoy,
        FirstTime(says_master(replica), 0.002) as promoted,
        FirstTime(majority_names(stack, replica.address), 0.01) as majority,
    ):
        killed_at = time.monotonic()
        stack.cluster.node(old).kill()
        wait_until(lambda: role_at_switch, 30, what="Envoy to route to the replica")
        wait_until(lambda: majority.at, 30, what="a Sentinel majority naming the replica")
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 20, 15, what="writes after the switch")
    result = writer.stop()

    assert role_at_switch[0] == "master", "Envoy routed to the replica before it was a master"
    assert envoy.sequence() == [(old,), (replica.address,)]
    assert result.connection_lost is None
    assert missing_on(replica, result.acked[before:]) == []
    switched_at = envoy.first_time([replica.address])
    assert promoted.at is not None and switched_at is not None and majority.at is not None
    record_property("replica_master_after_kill_ms", round((promoted.at - killed_at) * 1000))
    record_property("envoy_after_replica_master_ms", round((switched_at - promoted.at) * 1000))
    record_property("sentinel_majority_after_kill_ms", round((majority.at - killed_at) * 1000))


@pytest.fixture
def quick_retry_stack(tmp_path: Path) -> Iterator[Stack]:
    """failover-timeout 2 s: surviving Sentinels retry a failover after ~4 s, not 20 s."""
    s = start_stack(tmp_path, failover_timeout_ms=2000)
    try:
        yield s
    finally:
        s.envoy.stop()
        s.control_plane.stop()
        s.cluster.stop()


def test_leader_killed_after_promotion_sidecar_switches_without_majority(
    quick_retry_stack: Stack,
) -> None:
    """kill -9 the primary, then kill -9 the Sentinel leading the failover the moment the
    replica reports master (one of three Sentinels dies mid-failover, before any other
    learns of the promotion). Envoy must still switch to the replica while both surviving
    Sentinels name the dead primary (react first: no majority exists), /status must say
    provisional, and when the survivors redo the failover and confirm the replica, nothing
    moves. The old primary never reappears; the client keeps its connection."""
    stack = quick_retry_stack
    old = stack.primary_address()
    replica = stack.cluster.replicas[GROUP][0]
    leaders: list[SentinelNode] = []

    def kill_leader() -> None:
        """Only the leader flags the replica it selected as 'promoted'."""
        for s in stack.cluster.sentinels:
            try:
                flags = [r.get("flags", "") for r in s.known_replicas(GROUP)]
            except (redis.RedisError, WatchError, OSError):
                continue
            if any("promoted" in f.split(",") for f in flags):
                s.kill()
                leaders.append(s)
                return

    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the kill")
    with EnvoyWatch(stack) as envoy, FirstTime(says_master(replica), 0.002, then=kill_leader):
        stack.cluster.node(old).kill()
        wait_until(lambda: leaders, 30, what="the replica promoted and its leader killed")
        stack.envoy.wait_cluster_hosts(f"redis/{GROUP}", [replica.address], timeout=10)
        survivors = [s for s in stack.cluster.sentinels if s is not leaders[0]]
        assert [s.master_addr(GROUP) for s in survivors] == [old, old], (
            "a surviving Sentinel already knew the new primary: this run did not test "
            "switching without a majority"
        )
        status = group_status(stack)
        assert status.primary == str(replica.address) and status.provisional is True

        wait_until(
            lambda: all(s.master_addr(GROUP) == replica.address for s in survivors),
            40,
            interval=0.2,
            what="the surviving Sentinels to redo the failover",
        )
        wait_until(
            lambda: group_status(stack).provisional is False,
            10,
            interval=0.1,
            what="the control plane to see the promotion confirmed",
        )
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 10, 15, what="writes after confirming")
    result = writer.stop()

    assert envoy.sequence() == [(old,), (replica.address,)]
    assert result.connection_lost is None
    assert missing_on(replica, result.acked[before:]) == []
    confirmed = group_status(stack)
    assert confirmed.primary == str(replica.address)
    assert confirmed.config_epoch >= 1


def test_stale_sentinel_and_restarted_old_primary_never_win_then_all_sentinels_down(
    stack: Stack,
) -> None:
    """A Sentinel stopped across a failover comes back naming the old primary at the old
    epoch, while the old primary itself restarts and claims master (redis#12798,
    redis#1813): Envoy never routes to it again. Then every Sentinel stops: the sidecar
    keeps routing to the last primary and /status reports the group degraded."""
    old = stack.primary_address()
    old_node = stack.cluster.node(old)
    replica = stack.cluster.replicas[GROUP][0]
    stale = stack.cluster.sentinels[2]
    stale.stop()

    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 20, 10, what="writes before the kill")
    with EnvoyWatch(stack) as envoy:
        old_node.kill()
        stack.envoy.wait_cluster_hosts(f"redis/{GROUP}", [replica.address], timeout=30)
        switched = len(writer.result.acked)

        old_node.restart()
        stale.restart()
        claims = old_node.role()
        stale_answer = stale.master_addr(GROUP)
        assert claims == "master", "the restarted old primary should claim master at first"
        assert stale_answer == old, "the restarted Sentinel should first name the old primary"

        wait_until(
            lambda: stale.master_addr(GROUP) == replica.address,
            30,
            interval=0.1,
            what="the stale Sentinel to catch up",
            ignore=(redis.RedisError, WatchError, OSError),
        )
        wait_until(
            lambda: old_node.role() == "slave",
            30,
            interval=0.1,
            what="Sentinel to demote the restarted old primary",
            ignore=(redis.RedisError, WatchError, OSError),
        )
        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 10, 15, what="writes after the rejoin")
    assert envoy.sequence() == [(old,), (replica.address,)]

    for s in stack.cluster.sentinels:
        s.stop()
    wait_until(
        lambda: group_status(stack).degraded is True,
        15,
        interval=0.1,
        what="/status to report the group degraded",
    )
    before = len(writer.result.acked)
    wait_until(lambda: writer.acked_since(before) >= 20, 15, what="writes with no Sentinel")
    result = writer.stop()
    status = group_status(stack)
    assert status.primary == str(replica.address) and status.health is Health.DEGRADED
    assert not stack.control_plane.ready()
    assert stack.envoy_hosts() == [replica.address]
    assert result.connection_lost is None
    assert missing_on(replica, result.acked[switched:]) == []


def test_external_sentinel_failover_loses_no_acknowledged_write(
    stack: Stack, record_property: Callable[[str, object], None]
) -> None:
    """``SENTINEL FAILOVER`` run by someone else while a client writes every 10 ms through
    the sidecar: the old primary keeps accepting writes until Sentinel demotes it ~10 s
    later, so any write it acknowledges after the promotion is lost. With the write fence
    (CLIENT PAUSE WRITE when the leader selects the replica) and the switch on promotion,
    every acknowledged write is on the new primary. The count is recorded."""
    old = stack.primary_address()
    replica = stack.cluster.replicas[GROUP][0]
    writer = Writer("127.0.0.1", stack.listen.port).start()
    wait_until(lambda: len(writer.result.acked) >= 30, 10, what="writes before the failover")
    with stack.cluster.sentinels[0].client() as c:
        c.execute_command("SENTINEL", "FAILOVER", GROUP)
    stack.envoy.wait_cluster_hosts(f"redis/{GROUP}", [replica.address], timeout=30)
    before = len(writer.result.acked)
    wait_until(lambda: writer.acked_since(before) >= 30, 15, what="writes after the switch")
    result = writer.stop()

    lost = missing_on(replica, result.acked)
    record_property("acked_writes", len(result.acked))
    record_property("acked_writes_lost", len(lost))
    record_property("failed_commands", len(result.errors))
    assert result.connection_lost is None
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    assert stack.cluster.wait_failover(GROUP, old, timeout=15).address == replica.address


# --------------------------------------------------------------------------- I/O seam


@pytest.fixture
def auth_topology(tmp_path: Path) -> Iterator[tuple[RedisNode, SentinelNode]]:
    """A password-protected Redis and a Sentinel that requires an ACL user."""
    primary = RedisNode.start(
        tmp_path,
        extra_conf=["requirepass redis-secret"],
        client_options={"password": "redis-secret"},
    )
    sentinel: SentinelNode | None = None
    try:
        sentinel = SentinelNode.start(
            tmp_path,
            monitors=[(GROUP, primary.address)],
            quorum=1,
            extra_conf=[
                "user default off",
                "user watcher on >watch-secret ~* &* +@all",
            ],
            group_conf=["sentinel auth-pass {group} redis-secret"],
            client_options={"username": "watcher", "password": "watch-secret"},
        )
        yield primary, sentinel
    finally:
        if sentinel is not None:
            sentinel.stop()
        primary.stop()


async def test_sentinel_acl_user_and_redis_password(
    auth_topology: tuple[RedisNode, SentinelNode],
) -> None:
    """With the ACL user's password the Sentinel answers and the primary's ROLE (with the Redis
    password) says master; a wrong password makes the Sentinel unreachable with an error
    that says so without echoing the password."""
    primary, sentinel = auth_topology
    good = RedisSentinelIO(
        1.0,
        sentinel_auth=Credentials(Secret("watch-secret"), "watcher"),
        redis_auth=Credentials(Secret("redis-secret")),
    )
    bad = RedisSentinelIO(1.0, sentinel_auth=Credentials(Secret("wrong-guess"), "watcher"))
    try:
        view = await good.query(sentinel.address, [GROUP])
        assert view.reachable and view.groups[GROUP].primary == primary.address
        assert await good.role(primary.address) == "master"
        assert await bad.role(primary.address) == ""  # no Redis password: not asked
        refused = await bad.query(sentinel.address, [GROUP])
        assert not refused.reachable
        assert refused.error is not None and "wrong-guess" not in refused.error
        assert "auth" in refused.error.lower() or "password" in refused.error.lower()
    finally:
        await good.aclose()
        await bad.aclose()


async def test_announced_host_names_are_resolved(tmp_path: Path) -> None:
    """Sentinel with announce-hostnames reports 'localhost' for the primary and its replica;
    the watcher's I/O hands out IPv4 addresses (what EDS needs; it prefers IPv4 even
    where /etc/hosts also maps localhost to ::1, as Debian's does)."""
    primary = RedisNode.start(tmp_path)
    replica = sentinel = None
    try:
        replica = RedisNode.start(
            tmp_path, replica_of=primary.address, extra_conf=["replica-announce-ip localhost"]
        )
        replica.wait_replica_synced()
        sentinel = SentinelNode.start(
            tmp_path,
            monitors=[(GROUP, Address("localhost", primary.address.port))],
            quorum=1,
            extra_conf=["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"],
        )
        assert sentinel.master_info(GROUP)["ip"] == "localhost"
        io = RedisSentinelIO(1.0)
        try:

            async def replica_listed() -> bool:
                view = await io.query(sentinel.address, [GROUP])
                return bool(view.reachable and view.groups[GROUP].replicas)

            deadline = time.monotonic() + 15
            while not await replica_listed():
                assert time.monotonic() < deadline, "Sentinel never listed the replica"
                await asyncio.sleep(0.1)
            view = await io.query(sentinel.address, [GROUP])
            assert view.groups[GROUP].primary == primary.address
            assert view.groups[GROUP].replicas == (replica.address,)
            assert sentinel.known_replicas(GROUP)[0]["ip"] == "localhost"
        finally:
            await io.aclose()
    finally:
        for node in (sentinel, replica, primary):
            if node is not None:
                node.stop()
