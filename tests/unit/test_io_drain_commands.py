"""Drain's Redis/Sentinel commands through the I/O seam: strict parsers, one error tree,
and the drain procedure itself against the shipped fake (no server).

The fake answers as a well-behaved Sentinel and Redis would, so these tests pin the
order of the drain's commands, that a missing ACL permission refuses the drain in
one line before anything changes, and that a malformed reply stops it naming the field.
"""

from __future__ import annotations

import io

import pytest
import redis.exceptions

from redis_sentinel_watch import (
    Address,
    FakeSentinelIO,
    NoPermissionError,
    ReplyError,
    TimedOutError,
    UnknownGroupError,
)
from redis_sentinel_watch.errors import map_redis_errors
from redis_sentinel_watch.replies import (
    parse_config_int,
    parse_master_status,
    parse_replica_entries,
    parse_replication,
)
from xds.ops.drain import DrainOptions, run_drain, run_undrain
from xds.ops.drain_output import DrainResult
from xds.ops.drain_plan import Budget

G = "mymaster"
P, R = Address("127.0.0.1", 7001), Address("127.0.0.1", 7002)
SENTINELS = tuple(Address("127.0.0.1", 26379 + i) for i in range(3))


def replica_entry(**fields: str) -> list[str]:
    base = {
        "ip": "127.0.0.1",
        "port": "7002",
        "flags": "slave",
        "slave-priority": "100",
        "master-link-status": "ok",
    }
    base.update(fields)
    return [x for kv in base.items() for x in kv]


# ---------------------------------------------------------------- parsers


def test_replica_entries_are_strict_and_name_the_field() -> None:
    """A replica's priority and link are read, never defaulted: an odd value names the field."""
    (entry,) = parse_replica_entries([replica_entry(flags="slave,s_down")], G)
    assert entry.address == R and entry.priority == 100 and entry.link_ok
    assert "s_down" in entry.flags
    with pytest.raises(ReplyError, match="'slave-priority' is 'x'"):
        parse_replica_entries([replica_entry(**{"slave-priority": "x"})], G)
    with pytest.raises(ReplyError, match="'master-link-status'"):
        parse_replica_entries([replica_entry(**{"master-link-status": "maybe"})], G)
    with pytest.raises(ReplyError, match="'port'"):
        parse_replica_entries([replica_entry(port="")], G)


def test_master_status_keeps_flags_and_refuses_bad_numbers() -> None:
    """SENTINEL MASTER: flags kept whole; a present but odd down-after is an error, not 0."""
    reply = ["name", G, "ip", "127.0.0.1", "port", "7001", "flags", "master,s_down"]
    reply += ["config-epoch", "3", "down-after-milliseconds", "1000"]
    status = parse_master_status(reply)
    assert (status.primary, status.config_epoch, status.down_after_ms) == (P, 3, 1000)
    assert status.flags == {"master", "s_down"}
    reply[-1] = "soon"
    with pytest.raises(ReplyError, match="'down-after-milliseconds' is 'soon'"):
        parse_master_status(reply)


def test_replication_and_config_replies() -> None:
    """INFO replication and CONFIG GET: each field checked, each failure names it."""
    info = parse_replication(
        "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7001\r\n"
        "master_link_status:up\r\nslave_repl_offset:42\r\nmaster_sync_in_progress:0\r\n",
        R,
    )
    assert (info.role, info.master, info.link_up, info.offset) == ("slave", P, True, 42)
    assert parse_replication({"role": "master", "master_repl_offset": 7}, P).offset == 7
    with pytest.raises(ReplyError, match="'master_repl_offset' is None"):
        parse_replication({"role": "master"}, P)
    with pytest.raises(ReplyError, match="'role' is 'sentinel'"):
        parse_replication({"role": "sentinel"}, P)
    assert parse_config_int(["replica-priority", "0"], "replica-priority", P) == 0
    with pytest.raises(ReplyError, match="'replica-priority' is 'high'"):
        parse_config_int(["replica-priority", "high"], "replica-priority", P)


def test_redis_errors_map_to_the_one_tree() -> None:
    """NOPERM names the user and the command; timeouts are TimedOutError (maybe acted
    on); Sentinel's 'No such master' is UnknownGroupError."""
    who = "redis user 'cp' on 127.0.0.1:7001"
    with pytest.raises(NoPermissionError) as denied, map_redis_errors("redis x", who):
        raise redis.exceptions.NoPermissionError(
            "this user has no permissions to run the 'client|pause' command"
        )
    assert str(denied.value) == f"{who} lacks client|pause"
    assert denied.value.command == "client|pause"
    with pytest.raises(TimedOutError), map_redis_errors("sentinel x"):
        raise redis.exceptions.TimeoutError("Timeout reading from socket")
    with pytest.raises(UnknownGroupError), map_redis_errors("sentinel x"):
        raise redis.exceptions.ResponseError("No such master with that name")


# ---------------------------------------------------------------- the drain on the fake


@pytest.fixture
def fake() -> FakeSentinelIO:
    f = FakeSentinelIO()
    for s in SENTINELS:
        f.say(s, G, P, epoch=1, replicas=[R], down_after_ms=5000)
    f.add_node(P, config_file="/etc/redis/a.conf")
    f.add_node(R, master=P)
    return f


def drain(
    fake: FakeSentinelIO, node: Address = P, *, undrain: bool = False
) -> tuple[DrainResult, str]:
    options = DrainOptions(
        group=G,
        node=node,
        sentinels=SENTINELS,
        budget=Budget(pause_ms=2000, margin_ms=200),
        settle_timeout_s=1.0,
        io=lambda _timeout: fake,
    )
    out = io.StringIO()
    result = (run_undrain if undrain else run_drain)(options, out=out)
    return result, out.getvalue()


def test_switchover_sends_its_commands_in_order(fake: FakeSentinelIO) -> None:
    """Priority 0, pause, failover, demote, unpause, persist: in that order, on the right
    nodes; the replica is promoted and the old primary is a drained replica of it."""
    result, out = drain(fake)
    assert result.exit_code == 0, out
    assert (result.outcome, result.new_primary) == ("switched", R)
    assert fake.commands == [
        (P, "CONFIG SET replica-priority 0"),
        (P, "CLIENT PAUSE 2000 WRITE"),
        (SENTINELS[0], f"SENTINEL FAILOVER {G}"),
        (P, "REPLICAOF 127.0.0.1 7002"),
        (P, "CLIENT UNPAUSE"),
        (P, "CONFIG REWRITE"),
    ]
    assert fake.roles[P] == "slave" and fake.nodes[P].priority == 0


def test_missing_permission_refuses_in_one_line_and_changes_nothing(
    fake: FakeSentinelIO,
) -> None:
    """A user without client|pause on the primary: exit 1, one line naming it, no command run."""
    fake.denied[P] = {"client|pause"}
    result, out = drain(fake)
    assert (result.exit_code, result.outcome) == (1, "refused")
    assert out.strip() == f"drain refused: redis user 'default' on {P} lacks client|pause"
    assert fake.commands == []
    fake.denied = {SENTINELS[1]: {"sentinel|failover"}}
    result, out = drain(fake)
    assert out.strip().endswith(f"on {SENTINELS[1]} lacks sentinel|failover"), out
    assert fake.commands == []


def test_malformed_reply_stops_the_drain_naming_the_field(fake: FakeSentinelIO) -> None:
    """Every Sentinel's SENTINEL REPLICAS is malformed: refused, the field named, no change."""
    bad = ReplyError(f"SENTINEL REPLICAS {G}: field 'slave-priority' is 'x', not an integer")
    for s in SENTINELS:
        fake.failures[(s, "sentinel|replicas")] = bad
    result, out = drain(fake)
    assert result.outcome == "refused" and "'slave-priority' is 'x'" in result.message, out
    assert fake.commands == []


def test_accepted_failover_without_promotion_aborts_with_a_warning(
    fake: FakeSentinelIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sentinel accepts SENTINEL FAILOVER but nothing is promoted within the pause budget:
    the drain undoes its changes (unpause, priority back) and warns that Sentinel may
    still promote a replica, instead of promising the old primary is safe."""

    async def accepted_only(sentinel: Address, group: str) -> None:
        fake._run(sentinel, "SENTINEL", "FAILOVER", group)

    monkeypatch.setattr(fake, "sentinel_failover", accepted_only)
    result, out = drain(fake)
    assert (result.exit_code, result.outcome) == (1, "aborted"), out
    assert "Sentinel accepted SENTINEL FAILOVER and may still promote" in result.message
    assert fake.nodes[P].priority == 100 and fake.roles[P] == "master"
    assert (P, "CLIENT UNPAUSE") in fake.commands


def test_drain_then_undrain_a_replica(fake: FakeSentinelIO) -> None:
    """A replica is only marked (priority 0); undrain gives it back priority 100."""
    result, out = drain(fake, R)
    assert (result.exit_code, result.outcome) == (0, "drained"), out
    assert fake.nodes[R].priority == 0
    result, out = drain(fake, R, undrain=True)
    assert (result.exit_code, result.outcome) == (0, "undrained"), out
    assert fake.nodes[R].priority == 100
    assert fake.commands == [
        (R, "CONFIG SET replica-priority 0"),
        (R, "CONFIG SET replica-priority 100"),
    ]


async def test_permission_check_on_an_unreachable_node_is_one_mapped_error() -> None:
    """A node that refuses the connection makes the permission check raise the package's
    UnreachableError (drain prints it as one line), never redis-py's own error."""
    from redis_sentinel_watch import UnreachableError
    from redis_sentinel_watch.redis_io import RedisSentinelIO
    from xds.lab import free_port

    io = RedisSentinelIO(timeout_s=0.5)
    try:
        with pytest.raises(UnreachableError, match="connect"):
            await io.check_node_permissions(
                Address("127.0.0.1", free_port()), [("CLIENT", "PAUSE", "1", "WRITE")]
            )
    finally:
        await io.aclose()
