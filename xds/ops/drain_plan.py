"""What ``sentinel-xds drain`` / ``undrain`` will do, decided from facts alone (pure).

The drain talks to Sentinels, Redis nodes and control planes (:mod:`xds.ops.drain`);
every decision about *whether* and *what* is taken here, from plain values
gathered first, so refusals and plans can be unit-tested without a server and
``--dry-run`` shows exactly the plan a real run would follow.

"Drained" is ``replica-priority 0`` on the node: Sentinel never promotes such a
replica, and the setting lives in Redis itself, so every Sentinel and every
control-plane replica sees the same thing without any state of ours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from redis_sentinel_watch import Address, ReplicaEntry, majority
from redis_sentinel_watch.model import DEFAULT_REPLICA_PRIORITY
from xds.ops.exits import EXIT_PROBLEMS, EXIT_USAGE

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT_S",
    "DEFAULT_PAUSE_MS",
    "DEFAULT_PRIORITY",
    "Action",
    "Budget",
    "DrainRefusedError",
    "NodeFacts",
    "Plan",
    "ReplicaEntry",
    "SentinelAnswer",
    "plan_drain",
    "plan_undrain",
]

#: Redis' default ``replica-priority``, restored by ``undrain`` unless told otherwise
DEFAULT_PRIORITY = DEFAULT_REPLICA_PRIORITY
#: the longest a switchover may pause writes on the primary (``drain --pause-ms``)
DEFAULT_PAUSE_MS = 5000
#: per-request timeout to Redis, Sentinel and the admin API (``drain --timeout``)
DEFAULT_COMMAND_TIMEOUT_S = 1.0

EXIT_REFUSED = EXIT_PROBLEMS  # refused before changing anything

#: Sentinel flags that make a replica unpromotable
_BAD_FLAGS = frozenset({"s_down", "o_down", "disconnected"})


class DrainRefusedError(Exception):
    """The drain cannot start (nothing was changed). ``exit_code`` 2 for bad input, else 1."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class SentinelAnswer:
    """One Sentinel's view of the group (``SENTINEL MASTER`` + ``SENTINEL REPLICAS``)."""

    sentinel: Address
    reachable: bool
    primary: Address | None = None
    epoch: int = 0
    flags: frozenset[str] = frozenset()
    replicas: tuple[ReplicaEntry, ...] = ()
    error: str | None = None
    unknown_group: bool = False
    down_after_ms: int | None = None  # the group's down-after-milliseconds on this Sentinel


@dataclass(frozen=True)
class NodeFacts:
    """What a Redis node says about itself (``ROLE``, ``INFO``, ``CONFIG GET``)."""

    address: Address
    reachable: bool
    role: str = ""  # master | slave
    priority: int | None = None  # replica-priority
    master: Address | None = None  # for a replica: whom it replicates
    link_up: bool = False  # for a replica: master_link_status:up
    offset: int = 0  # master_repl_offset (primary) / slave_repl_offset (replica)
    config_file: str = ""
    error: str | None = None


class Action(StrEnum):
    SWITCHOVER = "switchover"  # the node is the primary: move it away, then mark it drained
    DRAIN_REPLICA = "drain-replica"  # the node is a replica: mark it drained
    ALREADY_DRAINED = "already-drained"
    UNDRAIN = "undrain"
    NOT_DRAINED = "not-drained"


@dataclass(frozen=True)
class Budget:
    """Time limits of a switchover. The pause budget bounds how long writes are blocked."""

    pause_ms: int = DEFAULT_PAUSE_MS
    margin_ms: int = 200  # act this long before Redis would lift the pause by itself

    @property
    def working_ms(self) -> int:
        """How long the paused steps may take before the drain gives up and undoes."""
        return max(self.pause_ms - self.margin_ms, 0)


@dataclass(frozen=True)
class Plan:
    """What the drain will do, and what it knows."""

    action: Action
    group: str
    node: Address
    primary: Address
    epoch: int
    agreeing: int
    configured: int
    candidates: tuple[Address, ...] = ()
    previous_priority: int | None = None
    new_priority: int | None = None
    config_file: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    pause_limit_ms: int | None = None  # longest pause Sentinel tolerates (see safe_pause_ms)

    def describe(self, budget: Budget, admins: Sequence[str]) -> list[str]:
        """The plan in words, one step per line (``--dry-run`` prints this)."""
        head = (
            f"group {self.group}: primary {self.primary} (epoch {self.epoch}, "
            f"{self.agreeing}/{self.configured} Sentinels agree)"
        )
        persist = (
            f"CONFIG REWRITE {self.config_file}"
            if self.config_file
            else "no config file: the change is lost if the node restarts"
        )
        lines = [head]
        if self.action is Action.ALREADY_DRAINED:
            lines.append(f"{self.node} is a replica with replica-priority 0: already drained")
        elif self.action is Action.NOT_DRAINED:
            lines.append(f"{self.node} has replica-priority {self.previous_priority}: not drained")
        elif self.action is Action.DRAIN_REPLICA:
            lines += [
                f"{self.node} is a replica; it will not be promoted again:",
                f"  1. CONFIG SET replica-priority 0 (was {self.previous_priority})",
                f"  2. {persist}",
            ]
        elif self.action is Action.UNDRAIN:
            lines += [
                f"{self.node} is drained; Sentinel may promote it again:",
                f"  1. CONFIG SET replica-priority {self.new_priority}",
                f"  2. {persist}",
            ]
        else:
            where = ", ".join(admins) or "(none)"
            lines += [
                f"{self.node} is the primary; planned switchover to one of "
                f"{', '.join(str(c) for c in self.candidates)}:",
                f"  1. check control plane(s) {where}: same primary, every sidecar synced",
                f"  2. CONFIG SET replica-priority 0 on {self.node} "
                f"(was {self.previous_priority}; never promoted again while drained)",
                f"  3. CLIENT PAUSE {budget.pause_ms} WRITE on {self.node} (writes wait, "
                "reads go on)",
                "  4. wait until every candidate replica has the primary's replication offset",
                "  5. tell the control plane(s) a drain is coming (labels the timeline)",
                f"  6. SENTINEL FAILOVER {self.group}",
                "  7. wait until a candidate reports role master",
                "  8. wait until every control plane routes every sidecar to it (ACKed)",
                f"  9. REPLICAOF <new primary> on {self.node}, then CLIENT UNPAUSE",
                f" 10. {persist}",
                f"steps 4-9 must finish within {budget.working_ms} ms (pause budget "
                f"{budget.pause_ms} ms minus {budget.margin_ms} ms margin); before step 6 "
                "a failure undoes everything (unpause, priority restored, the old primary "
                "keeps serving); after a promotion it completes the demotion instead, so no "
                "acknowledged write is lost",
            ]
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


def _agreed(
    group: str, answers: Sequence[SentinelAnswer], configured: int
) -> tuple[Address, int, int, list[SentinelAnswer]]:
    """(primary, epoch, agreeing, agreeing answers) or refuse."""
    need = majority(configured)
    if (
        answers
        and all(a.unknown_group for a in answers if a.reachable)
        and any(a.reachable for a in answers)
    ):
        raise DrainRefusedError(f"group {group!r} is not monitored by the Sentinels", EXIT_USAGE)
    reachable = [a for a in answers if a.reachable and a.primary is not None]
    if len(reachable) < need:
        # unreachable, refused, or a malformed reply (its error names the field)
        errors = "; ".join(f"{a.sentinel}: {a.error}" for a in answers if a.primary is None)
        raise DrainRefusedError(
            f"only {len(reachable)} of {configured} Sentinels answered for {group!r}; "
            f"a drain needs a majority ({need}){': ' + errors if errors else ''}"
        )
    votes = Counter(a.primary for a in reachable)
    primary, count = votes.most_common(1)[0]
    if primary is None or count < need:
        seen = ", ".join(f"{p} ({n})" for p, n in votes.most_common())
        raise DrainRefusedError(
            f"Sentinels do not agree on the primary of {group!r} ({seen}); wait for them to settle"
        )
    agreeing = [a for a in reachable if a.primary == primary]
    if any("failover_in_progress" in a.flags for a in reachable):
        raise DrainRefusedError(f"a failover of {group!r} is already in progress")
    if any(a.flags & {"s_down", "o_down"} for a in agreeing):
        raise DrainRefusedError(
            f"Sentinel flags the primary {primary} of {group!r} as down; this is not a "
            "planned drain any more"
        )
    return primary, max(a.epoch for a in agreeing), len(agreeing), agreeing


def _replicas(agreeing: Sequence[SentinelAnswer]) -> dict[Address, ReplicaEntry]:
    """Replicas any agreeing Sentinel lists; flags merged (one bad flag is enough)."""
    out: dict[Address, ReplicaEntry] = {}
    for answer in agreeing:
        for entry in answer.replicas:
            seen = out.get(entry.address)
            if seen is None:
                out[entry.address] = entry
            else:
                out[entry.address] = ReplicaEntry(
                    entry.address,
                    seen.flags | entry.flags,
                    min(seen.priority, entry.priority),
                    seen.link_ok and entry.link_ok,
                )
    return out


def candidate_problem(entry: ReplicaEntry, facts: NodeFacts | None, primary: Address) -> str | None:
    """Why this replica cannot be promoted now, or None if it can."""
    bad = entry.flags & _BAD_FLAGS
    if bad:
        return f"Sentinel flags it {','.join(sorted(bad))}"
    if not entry.link_ok:
        return "Sentinel reports its replication link down"
    if facts is None or not facts.reachable:
        return f"cannot ask it ({facts.error if facts else 'not asked'})"
    if facts.role != "slave":
        return f"it reports role {facts.role or '?'}"
    if facts.master != primary:
        return f"it replicates {facts.master}, not {primary}"
    if not facts.link_up:
        return "its replication link is down"
    if facts.priority == 0 or entry.priority == 0:
        return "it is drained (replica-priority 0)"
    return None


def _sentinel_may_promote(entry: ReplicaEntry, facts: NodeFacts | None) -> bool:
    """Whether Sentinel could select this replica: not flagged down, priority not 0."""
    drained = entry.priority == 0 or (facts is not None and facts.reachable and facts.priority == 0)
    return not (entry.flags & _BAD_FLAGS) and not drained


def safe_pause_ms(answers: Sequence[SentinelAnswer]) -> int | None:
    """The longest write pause that cannot make Sentinel think the primary is down.

    ``CLIENT PAUSE … WRITE`` also holds ``PUBLISH``, and Sentinel sends its hello
    ``PUBLISH`` and its ``PING`` on the same connection: a PING queued behind a
    held PUBLISH goes unanswered, and once a PING has been pending longer than
    ``down-after-milliseconds`` Sentinel flags the primary ``s_down`` and may start
    an unplanned failover in the middle of ours (seen in the lab with a 1.5 s
    pause and down-after 1000 ms). 80 % of the smallest down-after keeps a margin.
    """
    known = [a.down_after_ms for a in answers if a.down_after_ms]
    return min(known) * 4 // 5 if known else None


def plan_drain(
    group: str,
    node: Address,
    answers: Sequence[SentinelAnswer],
    configured: int,
    nodes: Mapping[Address, NodeFacts],
) -> Plan:
    """Decide what draining ``node`` means now, or raise :class:`DrainRefusedError`.

    ``nodes`` holds what the node itself and every replica said about themselves.
    """
    primary, epoch, agreeing, agreeing_answers = _agreed(group, answers, configured)
    replicas = _replicas(agreeing_answers)
    me = nodes.get(node)
    if node != primary and node not in replicas:
        known = ", ".join(str(r) for r in sorted(replicas)) or "none"
        raise DrainRefusedError(
            f"{node} is neither the primary ({primary}) nor a replica ({known}) of {group!r} "
            "according to Sentinel",
            EXIT_USAGE,
        )
    if me is None or not me.reachable:
        raise DrainRefusedError(f"cannot ask {node}: {me.error if me else 'not asked'}")
    base = _plan(
        Action.SWITCHOVER,
        group,
        node,
        me,
        (primary, epoch, agreeing, configured),
        pause_limit_ms=safe_pause_ms(agreeing_answers),
    )
    if node != primary:
        if me.priority == 0:
            return replace(base, action=Action.ALREADY_DRAINED)
        others = [
            a
            for a, e in replicas.items()
            if a != node and candidate_problem(e, nodes.get(a), primary) is None
        ]
        warnings: tuple[str, ...] = (
            ()
            if others
            else (f"after this, no replica of {group!r} can be promoted if {primary} fails",)
        )
        return replace(base, action=Action.DRAIN_REPLICA, warnings=warnings)
    if me.role != "master":
        raise DrainRefusedError(
            f"Sentinel names {node} the primary of {group!r} but it reports role "
            f"{me.role or '?'}; wait for the failover to settle"
        )
    problems = {a: candidate_problem(e, nodes.get(a), primary) for a, e in replicas.items()}
    candidates = tuple(sorted(a for a, p in problems.items() if p is None))
    if not candidates:
        why = "; ".join(f"{a}: {p}" for a, p in sorted(problems.items())) or "it has none"
        raise DrainRefusedError(f"no replica of {group!r} can take over from {node} ({why})")
    unsynced = [
        f"{a} ({p})"
        for a, p in sorted(problems.items())
        if p and _sentinel_may_promote(replicas[a], nodes.get(a))
    ]
    if unsynced:  # Sentinel picks by priority and its own (up to 10 s old) offsets, not ours
        raise DrainRefusedError(
            f"Sentinel may promote {', '.join(unsynced)}, which would lose data "
            "(docs/sentinel.md, the empty-replica trap); wait until `sentinel-xds status` "
            "shows it synced, or drain it first"
        )
    skipped = tuple(f"{a} will not be promoted: {p}" for a, p in sorted(problems.items()) if p)
    return replace(base, candidates=candidates, warnings=skipped)


def plan_undrain(
    group: str,
    node: Address,
    answers: Sequence[SentinelAnswer],
    configured: int,
    me: NodeFacts,
    priority: int = DEFAULT_PRIORITY,
) -> Plan:
    """Decide what undraining ``node`` means now, or raise :class:`DrainRefusedError`."""
    if not 1 <= priority <= 2**31 - 1:
        raise DrainRefusedError(f"--priority {priority}: expected 1 or more", EXIT_USAGE)
    # Only membership matters here (a priority is reset, nothing moves), so no
    # majority or settled failover is needed: one Sentinel that knows the node will do.
    reachable = [a for a in answers if a.reachable and a.primary is not None]
    if not reachable:
        if any(a.unknown_group for a in answers):
            raise DrainRefusedError(
                f"group {group!r} is not monitored by the Sentinels", EXIT_USAGE
            )
        errors = "; ".join(f"{a.sentinel}: {a.error}" for a in answers)
        raise DrainRefusedError(f"no Sentinel answered for {group!r}: {errors}")
    members = {a.primary for a in reachable} | set(_replicas(reachable))
    primary = Counter(a.primary for a in reachable).most_common(1)[0][0]
    assert primary is not None
    epoch = max(a.epoch for a in reachable)
    agreeing = sum(1 for a in reachable if a.primary == primary)
    if node not in members:
        known = ", ".join(str(m) for m in sorted(m for m in members if m is not None))
        raise DrainRefusedError(
            f"{node} is not a member of {group!r} according to Sentinel ({known})", EXIT_USAGE
        )
    if not me.reachable:
        raise DrainRefusedError(f"cannot ask {node}: {me.error}")
    action = Action.UNDRAIN if me.priority == 0 else Action.NOT_DRAINED
    return _plan(
        action, group, node, me, (primary, epoch, agreeing, configured), new_priority=priority
    )


def _plan(
    action: Action,
    group: str,
    node: Address,
    me: NodeFacts,
    sentinels: tuple[Address, int, int, int],
    *,
    new_priority: int | None = None,
    pause_limit_ms: int | None = None,
) -> Plan:
    """A plan for ``node`` from what the Sentinels said (``sentinels``: primary, epoch,
    agreeing, configured) and what the node said about itself (``me``)."""
    primary, epoch, agreeing, configured = sentinels
    return Plan(
        action,
        group,
        node,
        primary,
        epoch,
        agreeing,
        configured,
        previous_priority=me.priority,
        new_priority=new_priority,
        config_file=me.config_file,
        pause_limit_ms=pause_limit_ms,
    )
