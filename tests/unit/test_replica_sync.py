"""Whether a replica is synced: the strict parsers, the judgement, the watcher's gauge input.

Sentinel promotes a replica that has just restarted and not yet synced (the
empty-replica trap, docs/sentinel.md), so only a replica that Sentinel does
not flag *and* that says itself it replicates the primary with its link up and
no full sync in progress counts as promotable.
"""

from __future__ import annotations

import pytest

from redis_sentinel_watch import (
    Address,
    FakeSentinelIO,
    NoPermissionError,
    ReplicaEntry,
    ReplicaSync,
    ReplyError,
    UnreachableError,
    Watcher,
)
from redis_sentinel_watch.replica_sync import judge_replica
from redis_sentinel_watch.replies import ReplicationInfo, parse_replica_entries, parse_replication
from tests.unit.test_io_drain_commands import replica_entry
from xds.ops.status_view import problems, render_status, status_exit_code
from xds.service.admin_documents import GroupState, ReplicaSyncState, StatusDocument

S1, S2, S3 = (Address("127.0.0.1", p) for p in (26001, 26002, 26003))
P = Address("127.0.0.1", 7001)
R = Address("127.0.0.1", 7002)
R2 = Address("127.0.0.1", 7003)
G = "mymaster"

SYNCED_INFO = ReplicationInfo("slave", 100, P, link_up=True)


def _info(**fields: str) -> str:
    base = {
        "role": "slave",
        "master_host": "127.0.0.1",
        "master_port": "7001",
        "master_link_status": "up",
        "slave_repl_offset": "42",
        "master_sync_in_progress": "0",
    }
    base.update(fields)
    return "# Replication\r\n" + "".join(f"{k}:{v}\r\n" for k, v in base.items())


# --------------------------------------------------------------------------- parsers


def test_replica_entries_carry_flags_and_link() -> None:
    entries = parse_replica_entries(
        [
            replica_entry(),
            replica_entry(
                port="7003", flags="slave,s_down,disconnected", **{"master-link-status": "err"}
            ),
        ],
        G,
    )
    assert entries[0] == ReplicaEntry(R, frozenset({"slave"}), 100, True)
    assert not entries[0].down
    assert entries[1].down and not entries[1].link_ok


def test_replica_entry_with_an_odd_link_status_names_the_field() -> None:
    with pytest.raises(ReplyError, match="'master-link-status' is 'up', not ok/err"):
        parse_replica_entries([replica_entry(**{"master-link-status": "up"})], G)


def test_replication_reports_a_sync_in_progress_strictly() -> None:
    assert not parse_replication(_info(), R).sync_in_progress
    assert parse_replication(_info(master_sync_in_progress="1"), R).sync_in_progress
    with pytest.raises(ReplyError, match="'master_sync_in_progress' is 'yes', not 0/1"):
        parse_replication(_info(master_sync_in_progress="yes"), R)
    without = _info().replace("master_sync_in_progress:0\r\n", "")
    with pytest.raises(ReplyError, match="'master_sync_in_progress' is None"):
        parse_replication(without, R)


# --------------------------------------------------------------------------- judgement


@pytest.mark.parametrize(
    ("entries", "answer", "sync", "detail"),
    [
        ([ReplicaEntry(R)], SYNCED_INFO, ReplicaSync.SYNCED, ""),
        (
            [ReplicaEntry(R, frozenset({"slave", "s_down", "disconnected"}))],
            SYNCED_INFO,
            ReplicaSync.DOWN,
            "Sentinel flags it disconnected,s_down",
        ),
        (
            [ReplicaEntry(R)],
            ReplicationInfo("slave", 0, P, link_up=False),
            ReplicaSync.UNSYNCED,
            "its replication link is down",
        ),
        (
            [ReplicaEntry(R)],
            ReplicationInfo("slave", 0, P, link_up=False, sync_in_progress=True),
            ReplicaSync.UNSYNCED,
            "a full sync from the primary is in progress",
        ),
        (
            [ReplicaEntry(R)],
            ReplicationInfo("slave", 0, R2, link_up=True),
            ReplicaSync.UNSYNCED,
            f"it replicates {R2}, not {P}",
        ),
        (
            [ReplicaEntry(R)],
            ReplicationInfo("master", 0),
            ReplicaSync.UNSYNCED,
            "it reports role master",
        ),
        (
            [ReplicaEntry(R, link_ok=False)],
            SYNCED_INFO,
            ReplicaSync.UNSYNCED,
            "Sentinel still reports its replication link down",
        ),
        ([ReplicaEntry(R)], None, ReplicaSync.UNKNOWN, "not asked yet"),
        (
            [ReplicaEntry(R)],
            UnreachableError("redis 127.0.0.1:7002: connection refused"),
            ReplicaSync.UNKNOWN,
            "cannot ask it: redis 127.0.0.1:7002: connection refused",
        ),
    ],
)
def test_judge_replica(
    entries: list[ReplicaEntry],
    answer: ReplicationInfo | UnreachableError | None,
    sync: ReplicaSync,
    detail: str,
) -> None:
    assert judge_replica(entries, answer, P) == (sync, detail)


def test_without_info_permission_sentinels_view_decides_and_says_so() -> None:
    denied = NoPermissionError("redis user 'cp' on 127.0.0.1:7002 lacks info", "info")
    sync, detail = judge_replica([ReplicaEntry(R)], denied, P)
    assert sync is ReplicaSync.SYNCED and detail.startswith("Sentinel's view only")
    assert judge_replica([ReplicaEntry(R, link_ok=False)], denied, P)[0] is ReplicaSync.UNSYNCED


# --------------------------------------------------------------------------- watcher


def _watched(io: FakeSentinelIO, **say: object) -> Watcher:
    for s in (S1, S2, S3):
        io.say(s, G, P, 1, [R], **say)  # type: ignore[arg-type]
    io.add_node(P)
    io.add_node(R, P)
    return Watcher(io, [S1, S2, S3], [G])


async def test_a_synced_replica_is_promotable() -> None:
    io = FakeSentinelIO()
    watcher = _watched(io)
    await watcher.poll_once()
    await watcher.check_replicas()
    group = watcher.topology.group(G)
    assert group is not None
    assert [(r.address, r.sync) for r in group.replica_states] == [(R, ReplicaSync.SYNCED)]
    assert group.promotable == (R,)


async def test_a_resyncing_replica_is_not_promotable_until_synced_again() -> None:
    """The trap: Sentinel still lists it healthy; its own INFO says it is syncing."""
    io = FakeSentinelIO()
    watcher = _watched(io)
    await watcher.poll_once()
    await watcher.check_replicas()
    io.nodes[R].link_up, io.nodes[R].sync_in_progress = False, True
    await watcher.check_replicas()
    group = watcher.topology.group(G)
    assert group is not None and group.promotable == ()
    assert group.replica_states[0].sync is ReplicaSync.UNSYNCED
    io.nodes[R].link_up, io.nodes[R].sync_in_progress = True, False
    await watcher.check_replicas()
    group = watcher.topology.group(G)
    assert group is not None and group.promotable == (R,)


async def test_a_replica_sentinel_flags_down_is_listed_but_not_promotable() -> None:
    io = FakeSentinelIO()
    down = ReplicaEntry(R, frozenset({"slave", "s_down", "disconnected"}))
    for s in (S1, S2, S3):
        io.say(s, G, P, 1, [], replica_entries=[down])  # parse_replicas leaves it out
    io.add_node(P)
    watcher = Watcher(io, [S1, S2, S3], [G])
    await watcher.poll_once()
    await watcher.check_replicas()
    group = watcher.topology.group(G)
    assert group is not None and group.promotable == ()
    assert [(r.address, r.sync) for r in group.replica_states] == [(R, ReplicaSync.DOWN)]


async def test_a_drained_synced_replica_is_not_promotable() -> None:
    io = FakeSentinelIO()
    for s in (S1, S2, S3):
        io.say(s, G, P, 1, [R, R2])
    io.add_node(P)
    io.add_node(R, P)
    io.add_node(R2, P, priority=0)
    for s in (S1, S2, S3):  # as the real poll reports a replica with priority 0
        view = io.answers[s].groups[G]
        io.answers[s].groups[G] = type(view)(G, P, 1, (R, R2), drained=(R2,))
    watcher = Watcher(io, [S1, S2, S3], [G])
    await watcher.poll_once()
    await watcher.check_replicas()
    group = watcher.topology.group(G)
    assert group is not None and group.synced == (R, R2) and group.promotable == (R,)


# --------------------------------------------------------------------------- status


def _group(*states: ReplicaSyncState, drained: tuple[str, ...] = ()) -> GroupState:
    from redis_sentinel_watch import Health

    return GroupState(
        name=G,
        primary=str(P),
        replicas=tuple(s.address for s in states if s.sync is not ReplicaSync.DOWN),
        drained=drained,
        config_epoch=1,
        agreeing=3,
        sentinels=3,
        health=Health.OK,
        degraded=False,
        provisional=False,
        reason="",
        replica_sync=states,
    )


def _status(group: GroupState) -> StatusDocument:
    return StatusDocument(True, "ok", {}, (), (group,), (), ())


def test_status_says_a_failover_now_would_lose_data_and_exits_1() -> None:
    unsynced = ReplicaSyncState(str(R), ReplicaSync.UNSYNCED, "its replication link is down")
    status = _status(_group(unsynced))
    assert problems(status) == [
        f"group {G} has no synced replica: a failover now would lose data "
        f"({R} unsynced: its replication link is down)"
    ]
    assert status_exit_code([status]) == 1
    shown = render_status(status)
    assert f"{G}  {R}  unsynced  its replication link is down" in shown


def test_status_with_one_synced_replica_has_no_problem() -> None:
    group = _group(
        ReplicaSyncState(str(R), ReplicaSync.SYNCED, ""),
        ReplicaSyncState(
            str(R2), ReplicaSync.UNSYNCED, "a full sync from the primary is in progress"
        ),
    )
    assert problems(_status(group)) == []
    assert group.promotable == (str(R),)


def test_status_with_only_down_replicas_says_sentinel_cannot_fail_over() -> None:
    group = _group(ReplicaSyncState(str(R), ReplicaSync.DOWN, "Sentinel flags it s_down"))
    assert problems(_status(group)) == [
        f"group {G} has no promotable replica: if its primary {P} fails, Sentinel cannot fail over"
    ]
