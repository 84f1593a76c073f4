"""Parsing Sentinel replies and events as sentinel.c emits them, including hostile ones."""

from __future__ import annotations

import pytest

from redis_sentinel_watch import Address, ReplyError
from redis_sentinel_watch.replies import parse_event, parse_master, parse_replicas

S = Address("127.0.0.1", 26379)


def master(**over: str) -> list[str]:
    fields = {
        "name": "mymaster",
        "ip": "127.0.0.1",
        "port": "7001",
        "flags": "master",
        "config-epoch": "3",
    }
    fields.update(over)
    out: list[str] = []
    for k, v in fields.items():
        out += [k, v]
    return out


def test_master_entry() -> None:
    """A normal SENTINEL MASTERS entry gives primary, epoch and flags."""
    view = parse_master(master(flags="master,s_down,o_down"))
    assert view.primary == Address("127.0.0.1", 7001)
    assert view.config_epoch == 3
    assert view.primary_down


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"port": "sixty"}, "'port'"),
        ({"ip": ""}, "'ip'"),
        ({"config-epoch": "x"}, "'config-epoch'"),
        ({"flags": "slave"}, "flags"),
        ({"port": "70000"}, "out of range"),
        ({"port": "²"}, "'port'"),  # isdigit() is true, int() raises
        ({"port": "٣٣"}, "'port'"),  # isdigit() is true, int() reads 33
        ({"config-epoch": "--3"}, "'config-epoch'"),
        ({"config-epoch": "٣"}, "'config-epoch'"),
    ],
)
def test_hostile_master_entries(over: dict[str, str], fragment: str) -> None:
    """Malformed entries raise ReplyError naming the field."""
    with pytest.raises(ReplyError, match=fragment):
        parse_master(master(**over))


def test_odd_length_reply() -> None:
    """A key without value is rejected, not mis-paired."""
    with pytest.raises(ReplyError):
        parse_master(["name", "x", "ip"])


def test_replicas_skip_down() -> None:
    """Replicas flagged s_down or disconnected are not listed."""
    reply = [
        ["ip", "127.0.0.1", "port", "7002", "flags", "slave"],
        ["ip", "127.0.0.1", "port", "7003", "flags", "slave,s_down"],
        ["ip", "127.0.0.1", "port", "7004", "flags", "slave,disconnected"],
    ]
    assert parse_replicas(reply, "g") == (Address("127.0.0.1", 7002),)


def test_switch_master_event() -> None:
    """+switch-master names the group and the new primary."""
    ev = parse_event(S, "+switch-master", "mymaster 127.0.0.1 7001 127.0.0.1 7002")
    assert ev.group == "mymaster" and ev.instance == Address("127.0.0.1", 7002)


def test_instance_event() -> None:
    """Instance events name the instance and, after '@', the group."""
    ev = parse_event(S, "+sdown", "slave 127.0.0.1:7002 127.0.0.1 7002 @ mymaster 127.0.0.1 7001")
    assert ev.group == "mymaster" and ev.instance == Address("127.0.0.1", 7002)
    ev = parse_event(S, "+odown", "master mymaster 127.0.0.1 7001 #quorum 2/2")
    assert ev.group == "mymaster" and ev.instance == Address("127.0.0.1", 7001)


def test_garbage_event_is_still_a_trigger() -> None:
    """An unparseable payload yields an event without a group, never an exception."""
    ev = parse_event(S, "+switch-master", "garbage")
    assert ev.group is None


def test_promoted_replica_and_failover_timeout() -> None:
    """The replica the leader selected carries the 'promoted' flag; failover-timeout is read."""
    from redis_sentinel_watch.replies import promoted_replica

    reply = [
        ["ip", "127.0.0.1", "port", "7002", "flags", "slave,promoted"],
        ["ip", "127.0.0.1", "port", "7003", "flags", "slave"],
    ]
    assert promoted_replica(reply, "g") == Address("127.0.0.1", 7002)
    assert promoted_replica(reply[1:], "g") is None
    assert parse_master(master(**{"failover-timeout": "180000"})).failover_timeout_ms == 180000
    assert parse_master(master(**{"down-after-milliseconds": "5000"})).down_after_ms == 5000
    assert parse_master(master()).failover_timeout_ms == 0
    view = parse_master(master(flags="master,failover_in_progress"))
    assert view.failover_in_progress and not view.primary_down


def test_selection_event_names_replica_and_replaced_master() -> None:
    """+selected-slave (exactly as sentinel.c formats it) names candidate and old primary."""
    ev = parse_event(
        S, "+selected-slave", "slave 127.0.0.1:38693 127.0.0.1 38693 @ mymaster 127.0.0.1 57693"
    )
    assert ev.group == "mymaster"
    assert ev.instance == Address("127.0.0.1", 38693)
    assert ev.master == Address("127.0.0.1", 57693)


def test_switch_master_names_old_and_new() -> None:
    """+switch-master: master is the old primary, instance the new one."""
    ev = parse_event(S, "+switch-master", "mymaster 127.0.0.1 7001 127.0.0.1 7002")
    assert ev.master == Address("127.0.0.1", 7001) and ev.instance == Address("127.0.0.1", 7002)


def test_abort_event_names_master() -> None:
    """-failover-abort-* is about the master: 'master <name> <ip> <port>'."""
    ev = parse_event(S, "-failover-abort-slave-timeout", "master mymaster 127.0.0.1 7001")
    assert ev.group == "mymaster" and ev.master == Address("127.0.0.1", 7001)


def test_hostname_payloads_parse() -> None:
    """With announce-hostnames the payload carries names; they parse as addresses to resolve."""
    ev = parse_event(
        S, "+selected-slave", "slave redis-b:6379 redis-b 6379 @ mymaster redis-a 6379"
    )
    assert ev.instance == Address("redis-b", 6379) and ev.master == Address("redis-a", 6379)


def test_bad_ports_in_payload_give_no_address() -> None:
    """A payload with a non-numeric or out-of-range port yields no address, not an exception."""
    ev = parse_event(S, "+selected-slave", "slave x x notaport @ mymaster 127.0.0.1 99999")
    assert ev.group == "mymaster" and ev.instance is None and ev.master is None


def test_sentinels_reply() -> None:
    """SENTINEL SENTINELS lists the other Sentinels by ip/port; a bad entry names the field."""
    from redis_sentinel_watch.replies import parse_sentinels

    reply = [["name", "x", "ip", "127.0.0.1", "port", "26380"], ["ip", "10.0.0.2", "port", "1"]]
    assert parse_sentinels(reply, "g") == (Address("10.0.0.2", 1), Address("127.0.0.1", 26380))
    with pytest.raises(ReplyError, match="'port'"):
        parse_sentinels([["ip", "127.0.0.1", "port", "x"]], "g")


def test_drained_replicas_are_those_with_priority_zero() -> None:
    """A replica whose slave-priority is 0 (what `drain` sets) is reported as drained."""
    from redis_sentinel_watch.replies import drained_replicas

    reply = [
        ["ip", "127.0.0.1", "port", "7002", "flags", "slave", "slave-priority", "0"],
        ["ip", "127.0.0.1", "port", "7003", "flags", "slave", "slave-priority", "100"],
    ]
    assert drained_replicas(reply, "g") == (Address("127.0.0.1", 7002),)
