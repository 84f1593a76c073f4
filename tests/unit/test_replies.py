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
