"""What ``drain`` / ``undrain`` decide from the facts they gathered (pure, no servers)."""

from __future__ import annotations

import pytest

from redis_sentinel_watch import Address
from xds.ops.drain_plan import (
    Action,
    Budget,
    DrainRefusedError,
    NodeFacts,
    ReplicaEntry,
    SentinelAnswer,
    plan_drain,
    plan_undrain,
)

G = "mymaster"
P = Address("10.0.0.1", 6379)
R1 = Address("10.0.0.2", 6379)
R2 = Address("10.0.0.3", 6379)
S = [Address("10.0.1.1", 26379), Address("10.0.1.2", 26379), Address("10.0.1.3", 26379)]


def answer(
    i: int,
    primary: Address = P,
    replicas: tuple[ReplicaEntry, ...] = (ReplicaEntry(R1), ReplicaEntry(R2)),
    flags: frozenset[str] = frozenset({"master"}),
    epoch: int = 3,
) -> SentinelAnswer:
    return SentinelAnswer(S[i], True, primary, epoch, flags, replicas)


def down(i: int) -> SentinelAnswer:
    return SentinelAnswer(S[i], False, error="Connection refused")


def primary_facts(priority: int = 100) -> NodeFacts:
    return NodeFacts(P, True, "master", priority, offset=100, config_file="/etc/redis.conf")


def replica_facts(addr: Address, priority: int = 100, link_up: bool = True) -> NodeFacts:
    return NodeFacts(addr, True, "slave", priority, master=P, link_up=link_up, offset=100)


def healthy() -> dict[Address, NodeFacts]:
    return {P: primary_facts(), R1: replica_facts(R1), R2: replica_facts(R2)}


def test_primary_gets_a_switchover_to_every_healthy_replica() -> None:
    """The primary, agreed by all Sentinels, is switched over; both replicas may take over."""
    plan = plan_drain(G, P, [answer(0), answer(1), answer(2)], 3, healthy())
    assert plan.action is Action.SWITCHOVER
    assert plan.candidates == (R1, R2)
    assert (plan.agreeing, plan.configured, plan.epoch) == (3, 3, 3)
    assert plan.previous_priority == 100
    assert plan.warnings == ()


def test_a_majority_of_sentinels_is_enough() -> None:
    """One Sentinel of three down still leaves a majority to trust."""
    plan = plan_drain(G, P, [answer(0), down(1), answer(2)], 3, healthy())
    assert plan.action is Action.SWITCHOVER
    assert plan.agreeing == 2


def test_refused_without_a_majority_and_the_errors_are_named() -> None:
    """Two of three Sentinels down: nothing is changed, the message says which and why."""
    with pytest.raises(DrainRefusedError) as err:
        plan_drain(G, P, [answer(0), down(1), down(2)], 3, healthy())
    assert err.value.exit_code == 1
    assert "only 1 of 3" in str(err.value)
    assert "10.0.1.2:26379: Connection refused" in str(err.value)


def test_refused_when_sentinels_disagree() -> None:
    """No majority for one primary (mid-failover): refuse rather than guess."""
    answers = [answer(0), answer(1, primary=R1), down(2)]
    with pytest.raises(DrainRefusedError, match="do not agree"):
        plan_drain(G, P, answers, 3, healthy())


def test_refused_while_a_failover_is_in_progress() -> None:
    """A Sentinel flagging failover_in_progress means Sentinel is busy: do not add to it."""
    busy = answer(0, flags=frozenset({"master", "failover_in_progress"}))
    with pytest.raises(DrainRefusedError, match="in progress"):
        plan_drain(G, P, [busy, answer(1), answer(2)], 3, healthy())


def test_refused_when_the_primary_is_down() -> None:
    """An unplanned failover is Sentinel's job, not a drain's."""
    flagged = answer(0, flags=frozenset({"master", "s_down"}))
    with pytest.raises(DrainRefusedError, match="down"):
        plan_drain(G, P, [flagged, answer(1), answer(2)], 3, healthy())


def test_unknown_node_is_a_usage_error() -> None:
    """A typo in HOST:PORT exits 2 and lists the group's members."""
    stranger = Address("10.9.9.9", 6379)
    with pytest.raises(DrainRefusedError) as err:
        plan_drain(G, stranger, [answer(0), answer(1), answer(2)], 3, healthy())
    assert err.value.exit_code == 2
    assert "10.0.0.1:6379" in str(err.value) and "10.0.0.2:6379" in str(err.value)


def test_unknown_group_is_a_usage_error() -> None:
    """Every Sentinel answering 'no such master' is bad input, exit 2."""
    unknown = [SentinelAnswer(s, True, error="ERR No such master", unknown_group=True) for s in S]
    with pytest.raises(DrainRefusedError) as err:
        plan_drain("nope", P, unknown, 3, healthy())
    assert err.value.exit_code == 2


def test_replicas_that_cannot_be_promoted_are_left_out_with_a_reason() -> None:
    """Down, lagging-link, drained and foreign replicas are no candidates; each is explained."""
    entries = (ReplicaEntry(R1, frozenset({"slave", "s_down"})), ReplicaEntry(R2))
    nodes = healthy()
    plan = plan_drain(G, P, [answer(i, replicas=entries) for i in range(3)], 3, nodes)
    assert plan.candidates == (R2,)
    assert any("s_down" in w for w in plan.warnings)

    nodes[R2] = replica_facts(R2, link_up=False)
    with pytest.raises(DrainRefusedError) as err:
        plan_drain(G, P, [answer(i, replicas=entries) for i in range(3)], 3, nodes)
    assert "replication link is down" in str(err.value)
    assert "s_down" in str(err.value)


def test_drained_replica_is_no_candidate() -> None:
    """replica-priority 0 on the replica itself (Sentinel may not have seen it yet) excludes it."""
    nodes = healthy()
    nodes[R1] = replica_facts(R1, priority=0)
    plan = plan_drain(G, P, [answer(0), answer(1), answer(2)], 3, nodes)
    assert plan.candidates == (R2,)


def test_refused_without_any_candidate() -> None:
    """A primary with no promotable replica cannot be drained."""
    entries = (ReplicaEntry(R1),)
    nodes = {P: primary_facts(), R1: replica_facts(R1, priority=0)}
    with pytest.raises(DrainRefusedError, match="no replica"):
        plan_drain(G, P, [answer(i, replicas=entries) for i in range(3)], 3, nodes)


def test_primary_that_reports_slave_is_refused() -> None:
    """Sentinel's word and the node's ROLE disagree: a failover is settling."""
    nodes = healthy()
    nodes[P] = NodeFacts(P, True, "slave", 100, master=R1)
    with pytest.raises(DrainRefusedError, match="reports role slave"):
        plan_drain(G, P, [answer(0), answer(1), answer(2)], 3, nodes)


def test_replica_is_marked_drained_and_a_lone_replica_warns() -> None:
    """Draining a replica only marks it; draining the last promotable one says so."""
    plan = plan_drain(G, R1, [answer(0), answer(1), answer(2)], 3, healthy())
    assert plan.action is Action.DRAIN_REPLICA
    assert plan.warnings == ()
    entries = (ReplicaEntry(R1),)
    nodes = {P: primary_facts(), R1: replica_facts(R1)}
    lone = plan_drain(G, R1, [answer(i, replicas=entries) for i in range(3)], 3, nodes)
    assert lone.action is Action.DRAIN_REPLICA
    assert "no replica" in lone.warnings[0]


def test_draining_a_drained_replica_is_a_no_op() -> None:
    """Idempotent: a replica with replica-priority 0 is already drained."""
    nodes = healthy()
    nodes[R1] = replica_facts(R1, priority=0)
    plan = plan_drain(G, R1, [answer(0), answer(1), answer(2)], 3, nodes)
    assert plan.action is Action.ALREADY_DRAINED


def test_dry_run_plan_names_every_step_and_the_budget() -> None:
    """--dry-run output: the order of the switchover, the pause budget and the undo rule."""
    plan = plan_drain(G, P, [answer(0), answer(1), answer(2)], 3, healthy())
    text = "\n".join(plan.describe(Budget(pause_ms=3000, margin_ms=300), ["http://cp:9102"]))
    order = ["CLIENT PAUSE 3000 WRITE", "offset", "SENTINEL FAILOVER", "role master", "REPLICAOF"]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "2700 ms" in text and "http://cp:9102" in text
    assert "CONFIG REWRITE /etc/redis.conf" in text


def test_undrain_restores_priority_and_is_idempotent() -> None:
    """A drained node is undrained to the asked priority; an undrained one is left alone."""
    answers = [answer(0), answer(1), answer(2)]
    drained = plan_undrain(G, R1, answers, 3, replica_facts(R1, priority=0), priority=50)
    assert (drained.action, drained.new_priority) == (Action.UNDRAIN, 50)
    fine = plan_undrain(G, R1, answers, 3, replica_facts(R1))
    assert fine.action is Action.NOT_DRAINED


def test_undrain_needs_no_majority_but_a_member() -> None:
    """Undrain only resets a priority: one Sentinel that knows the node suffices."""
    answers = [answer(0), down(1), down(2)]
    assert plan_undrain(G, R1, answers, 3, replica_facts(R1, priority=0)).action is Action.UNDRAIN
    with pytest.raises(DrainRefusedError) as err:
        plan_undrain(G, Address("10.9.9.9", 1), answers, 3, replica_facts(R1, priority=0))
    assert err.value.exit_code == 2


def test_pause_limit_stays_below_sentinel_down_after() -> None:
    """A write pause also holds Sentinel's PING behind its hello PUBLISH, so the drain
    caps the pause at 80% of the smallest down-after-milliseconds any Sentinel uses."""
    from xds.ops.drain_plan import SentinelAnswer, safe_pause_ms

    s1, s2 = Address("127.0.0.1", 26379), Address("127.0.0.1", 26380)
    answers = [
        SentinelAnswer(s1, True, down_after_ms=30_000),
        SentinelAnswer(s2, True, down_after_ms=1_000),
    ]
    assert safe_pause_ms(answers) == 800
    assert safe_pause_ms([SentinelAnswer(s1, False)]) is None


def test_switchover_refused_while_sentinel_may_promote_an_unsynced_replica() -> None:
    """The empty-replica trap: Sentinel lists R2 healthy but R2 is in a full sync.
    Sentinel picks by priority and its own (stale) offsets, so it may promote R2 and
    lose data: refused, naming R2; once R2 is drained, the switchover goes ahead."""
    nodes = healthy()
    nodes[R2] = replica_facts(R2, link_up=False)
    answers = [answer(i) for i in range(3)]
    with pytest.raises(DrainRefusedError) as err:
        plan_drain(G, P, answers, 3, nodes)
    assert str(err.value).startswith(
        f"Sentinel may promote {R2} (its replication link is down), which would lose data"
    )
    nodes[R2] = replica_facts(R2, link_up=False, priority=0)
    assert plan_drain(G, P, answers, 3, nodes).candidates == (R1,)
