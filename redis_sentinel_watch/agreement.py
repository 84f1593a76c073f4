"""The pure decision: from what every Sentinel said to the primary we publish.

This is the one place that answers "who is the primary of this group now?". It
performs no I/O so that every rule can be tested exhaustively (see
``tests/unit/test_agreement.py``, property-based with hypothesis). The watcher
gathers the inputs; this module only decides.

Rules, in order:

1. Only reachable Sentinels that are not in TILT mode vote. A Sentinel in TILT
   suspends its own judgement (its timers are unreliable), so it neither
   confirms nor blocks a candidate.
2. A candidate is a (primary address, config epoch) pair. It wins when a
   majority of the *configured* Sentinels (not of those that answered) report
   exactly that pair. A partitioned minority can therefore never move traffic.
3. A winner whose config epoch is lower than the one we already published is
   refused: a Sentinel that was down across a failover comes back believing
   the old configuration (redis#12798), and epochs only grow.
4. A winner is published only after its own ``ROLE`` says ``master``
   (when role checking is on). A node that Sentinel does not list as primary
   is never published, whatever it says about itself (redis#1813).
5. With no winner we keep the last good primary and mark the group degraded;
   with no last good primary the group is unknown (no endpoint).

React first (:class:`Promotion`): once the Sentinel leading a failover has
selected a replica to replace the published primary, and that replica's own
``ROLE`` says ``master``, it is published *provisionally*, before a majority of
Sentinels has confirmed it (the leader only notices the promotion at its next
``INFO`` of the replica, up to a second later, and the others after that).
The provisional primary keeps the old config epoch and gives way to the
Sentinels as soon as they settle (a majority at a higher epoch, whatever
primary they name), when the failover aborts, or when the candidate reports
``slave`` again. ``docs/sentinel.md`` explains why this is safe and what risk
remains.

Dissent (:func:`assess_dissent`): the decision also says which Sentinels see
the group differently from the majority (another primary, a higher config
epoch, or TILT). They are outvoted, which is right, but a Sentinel at a
higher epoch is a rogue or misconfigured one that the next failover may
listen to, so it is reported once it has disagreed for longer than a
failover's normal catch-up (:data:`DISSENT_GRACE_S`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from .model import Address, Dissent, GroupTopology, GroupView, Health, SentinelView
from .replies import SentinelEvent

__all__ = [
    "ABORT_EVENTS",
    "DISSENT_GRACE_S",
    "SELECTION_EVENTS",
    "Promotion",
    "PromotionStatus",
    "Role",
    "assess_dissent",
    "candidate",
    "candidates_to_verify",
    "decide_group",
    "majority",
    "promotion_aborted_by",
    "promotion_from_event",
    "promotion_from_views",
    "promotion_status",
]

Role = str  # "master", "slave", "sentinel" or "" when the node could not be asked

#: Events only the failover leader emits, naming the replica it selected
#: (``<type> <name> <ip> <port> @ <group> <old-primary-ip> <old-primary-port>``).
SELECTION_EVENTS = frozenset(
    {
        "+selected-slave",
        "+failover-state-send-slaveof-noone",
        "+failover-state-wait-promotion",
        "+promoted-slave",
    }
)

#: Events by which the leader gives a failover up (payload names the master).
ABORT_EVENTS = frozenset(
    {
        "-failover-abort-not-elected",
        "-failover-abort-no-good-slave",
        "-failover-abort-slave-timeout",
        "-failover-abort-master-is-replica",  # SENTINEL FAILOVER ... on a replica (7.x)
    }
)


#: How long a Sentinel may disagree with the majority before it is reported. In every
#: failover the leader runs ahead of the others for a moment and the others catch up
#: through hello messages (published every 2 s): a shorter disagreement is normal.
DISSENT_GRACE_S = 5.0


def majority(configured: int) -> int:
    """Votes needed out of ``configured`` Sentinels: strictly more than half."""
    return configured // 2 + 1


def _votes(views: Sequence[SentinelView], group: str) -> list[GroupView]:
    return [v.groups[group] for v in views if v.reachable and not v.tilt and group in v.groups]


def candidate(
    views: Sequence[SentinelView], group: str, configured: int
) -> tuple[GroupView | None, int]:
    """The (primary, epoch) a majority agrees on, and how many Sentinels agree.

    Returns ``(None, best_count)`` when no pair reaches a majority; ``best_count``
    is then the size of the largest agreeing set (for status and logs).
    """
    votes = _votes(views, group)
    if not votes:
        return None, 0
    tally = Counter((v.primary, v.config_epoch) for v in votes)
    (best_primary, best_epoch), count = max(
        tally.items(), key=lambda kv: (kv[1], kv[0][1], str(kv[0][0]))
    )
    if count < majority(configured):
        return None, count
    representative = next(
        v for v in votes if v.primary == best_primary and v.config_epoch == best_epoch
    )
    return representative, count


@dataclass(frozen=True)
class Promotion:
    """A failover leader selected ``candidate`` to replace ``replacing`` in ``group``.

    ``replacing`` is always the primary we had published when we learned of it,
    and ``base_epoch`` its config epoch: a failover about any other primary is
    not ours to follow early. ``leader`` is the Sentinel that runs the failover
    (None when we learned of it from a ``+switch-master``, which any Sentinel
    emits). ``seen_round`` is the watcher's poll round in which we learned of
    it: only polls started later can show that the leader gave up.
    ``reported_master`` is set once the candidate's own ``ROLE`` said master.
    """

    group: str
    candidate: Address
    replacing: Address
    base_epoch: int
    leader: Address | None
    source: str
    seen_round: int = 0
    reported_master: bool = False


class PromotionStatus(StrEnum):
    """Whether a :class:`Promotion` still decides anything."""

    ACTIVE = "active"  # follow it (once the candidate says master)
    SETTLED = "settled"  # a Sentinel majority agrees at a higher epoch: follow them
    ABORTED = "aborted"  # the failover was given up (or undone): follow the Sentinels


def promotion_from_event(
    event: SentinelEvent, last: GroupTopology | None, seen_round: int = 0
) -> Promotion | None:
    """The promotion an event announces for the published primary, if any.

    ``+selected-slave``, ``+failover-state-send-slaveof-noone``,
    ``+failover-state-wait-promotion`` and ``+promoted-slave`` come only from the
    leader and name the selected replica and the master it replaces;
    ``+switch-master`` names old and new primary after a Sentinel switched.
    An event about a primary other than the published one (an old failover, a
    stale Sentinel) yields nothing.
    """
    if event.group is None or last is None or last.primary is None:
        return None
    if event.group != last.name or event.instance is None or event.master is None:
        return None
    if event.master != last.primary or event.instance == last.primary:
        return None
    if event.channel in SELECTION_EVENTS:
        leader: Address | None = event.sentinel
    elif event.channel == "+switch-master":
        leader = None
    else:
        return None
    return Promotion(
        group=event.group,
        candidate=event.instance,
        replacing=event.master,
        base_epoch=last.config_epoch,
        leader=leader,
        source=event.channel,
        seen_round=seen_round,
    )


def promotion_aborted_by(event: SentinelEvent, promotion: Promotion) -> bool:
    """True when ``event`` is the leader of ``promotion`` giving that failover up.

    Only the leader's own abort counts: a Sentinel that lost the election emits
    ``-failover-abort-not-elected`` up to its election timeout later, possibly
    after the winner has already promoted the replica.
    """
    return (
        event.channel in ABORT_EVENTS
        and promotion.leader is not None
        and event.sentinel == promotion.leader
        and event.group == promotion.group
        and event.master == promotion.replacing
    )


def promotion_from_views(
    views: Sequence[SentinelView], last: GroupTopology | None, seen_round: int = 0
) -> Promotion | None:
    """A promotion visible in a poll: a leader with ``failover_in_progress`` on the
    published primary and a replica flagged ``promoted``. Covers a lost event."""
    if last is None or last.primary is None:
        return None
    for v in views:
        gv = v.groups.get(last.name) if v.reachable and not v.tilt else None
        if (
            gv is not None
            and gv.failover_in_progress
            and gv.promoted is not None
            and gv.primary == last.primary
            and gv.promoted != last.primary
        ):
            return Promotion(
                group=last.name,
                candidate=gv.promoted,
                replacing=last.primary,
                base_epoch=last.config_epoch,
                leader=v.sentinel,
                source="poll:promoted",
                seen_round=seen_round,
            )
    return None


def promotion_status(
    promotion: Promotion,
    views: Sequence[SentinelView],
    configured: int,
    roles: Mapping[Address, Role],
    views_round: int,
) -> tuple[PromotionStatus, str]:
    """Is ``promotion`` still the thing to follow, given a poll made in ``views_round``?

    * SETTLED when a majority of configured Sentinels agrees on any primary at an
      epoch above ``base_epoch``: from then on the Sentinels decide, whether they
      confirm the candidate or name another node.
    * ABORTED when the candidate, having said ``master``, says ``slave`` again
      (Sentinel converted it back); or when a poll started after we learned of
      the promotion shows the leader with no failover in progress, still naming
      the old primary at the old epoch. The leader sets ``failover_in_progress``
      before it selects a replica and clears it only by aborting or by switching
      to the new primary (which changes primary and epoch), so that
      combination means exactly "aborted" even if the ``-failover-abort-*``
      message was lost.
    """
    winner, _ = candidate(views, promotion.group, configured)
    if winner is not None and winner.config_epoch > promotion.base_epoch:
        return (
            PromotionStatus.SETTLED,
            f"Sentinels agree on {winner.primary} at epoch {winner.config_epoch}",
        )
    if promotion.reported_master and roles.get(promotion.candidate) == "slave":
        return PromotionStatus.ABORTED, f"candidate {promotion.candidate} reports slave again"
    if promotion.leader is not None and views_round > promotion.seen_round:
        for v in views:
            if v.sentinel != promotion.leader or not v.reachable:
                continue
            gv = v.groups.get(promotion.group)
            if (
                gv is not None
                and not gv.failover_in_progress
                and gv.primary == promotion.replacing
                and gv.config_epoch <= promotion.base_epoch
            ):
                return (
                    PromotionStatus.ABORTED,
                    f"leader {promotion.leader} no longer runs a failover",
                )
    return PromotionStatus.ACTIVE, ""


def _provisional(
    group: str,
    views: Sequence[SentinelView],
    configured: int,
    last: GroupTopology | None,
    roles: Mapping[Address, Role],
    promotion: Promotion,
) -> GroupTopology | None:
    """The provisional topology for an ACTIVE promotion, or None to use the Sentinels."""
    if promotion.group != group or last is None or last.primary is None:
        return None
    already = last.primary == promotion.candidate
    if already and not last.provisional:
        return None  # confirmed already: nothing provisional about it
    if not already and last.primary != promotion.replacing:
        return None
    said = roles.get(promotion.candidate)
    if said == "slave":
        return None
    if said != "master" and not already and not promotion.reported_master:
        return None
    _, count = candidate(views, group, configured)
    return GroupTopology(
        name=group,
        primary=promotion.candidate,
        replicas=tuple(sorted(r for r in last.replicas if r != promotion.candidate)),
        drained=tuple(r for r in last.drained if r != promotion.candidate),
        config_epoch=last.config_epoch,
        agreeing=count,
        sentinels=configured,
        health=Health.OK,
        reason=(
            f"promoted by the failover leader ({promotion.source}), reports master; "
            "waiting for a Sentinel majority to confirm"
        ),
        provisional=True,
    )


def decide_group(
    group: str,
    views: Sequence[SentinelView],
    configured: int,
    last: GroupTopology | None,
    roles: Mapping[Address, Role],
    role_check: bool = True,
    *,
    promotion: Promotion | None = None,
    views_round: int = 0,
    now: float = 0.0,
    dissent_grace_s: float = DISSENT_GRACE_S,
) -> GroupTopology:
    """Decide one group's topology. Pure: same inputs, same answer.

    ``roles`` maps node address to what that node's own ``ROLE`` said; a missing
    entry means it was not asked or did not answer. ``promotion`` is a failover
    the leader is running for this group (see :func:`promotion_status`;
    ``views_round`` is the poll round that produced ``views``): while it is
    ACTIVE and its candidate reports master, the candidate is published
    provisionally; otherwise the rules in the module docstring apply.
    ``now`` (``time.monotonic()``) dates the disagreements in ``dissent_seen``;
    those older than ``dissent_grace_s`` are reported in ``dissent``.
    """
    decided = _decide(
        group,
        views,
        configured,
        last,
        roles,
        role_check,
        promotion=promotion,
        views_round=views_round,
    )
    seen = assess_dissent(views, group, configured, last.dissent_seen if last else (), now)
    reported = tuple(d for d in seen if now - d.since >= dissent_grace_s)
    return replace(decided, dissent=reported, dissent_seen=seen)


def assess_dissent(
    views: Sequence[SentinelView],
    group: str,
    configured: int,
    previous: Sequence[Dissent],
    now: float,
) -> tuple[Dissent, ...]:
    """Every reachable Sentinel whose view of ``group`` differs from the majority's pair.

    Compared with the majority (primary, epoch) of :func:`candidate`, not with
    what we publish: the question is "who is outvoted". Without a majority
    there is nothing to dissent from (the group is degraded and its reason
    says why), so the answer is empty. A Sentinel that does not answer has no
    view (it is reported unreachable instead). A disagreement found in
    ``previous`` unchanged keeps its ``since``; a new one starts at ``now``.
    """
    winner, _ = candidate(views, group, configured)
    if winner is None:
        return ()
    since = {d: d.since for d in previous}  # equality ignores since: same disagreement
    out: list[Dissent] = []
    for v in views:
        if not v.reachable:
            continue
        gv = v.groups.get(group)
        reasons = []
        if gv is not None and gv.primary != winner.primary:
            reasons.append("other-primary")
        if gv is not None and gv.config_epoch > winner.config_epoch:
            reasons.append("higher-epoch")
        if v.tilt:
            reasons.append("tilt")
        if not reasons:
            continue
        found = Dissent(
            v.sentinel,
            group,
            tuple(reasons),
            gv.primary if gv is not None else None,
            gv.config_epoch if gv is not None else None,
            winner.primary,
            winner.config_epoch,
        )
        out.append(replace(found, since=since.get(found, now)))
    return tuple(sorted(out, key=lambda d: d.sentinel))


def _decide(
    group: str,
    views: Sequence[SentinelView],
    configured: int,
    last: GroupTopology | None,
    roles: Mapping[Address, Role],
    role_check: bool,
    *,
    promotion: Promotion | None,
    views_round: int,
) -> GroupTopology:
    """:func:`decide_group` without the dissent: who is the primary."""
    if promotion is not None:
        status, _ = promotion_status(promotion, views, configured, roles, views_round)
        if status is PromotionStatus.ACTIVE:
            early = _provisional(group, views, configured, last, roles, promotion)
            if early is not None:
                return early
    winner, count = candidate(views, group, configured)
    kept_primary = last.primary if last else None
    kept_epoch = last.config_epoch if last else 0
    kept_replicas = last.replicas if last else ()

    def keep(reason: str) -> GroupTopology:
        return GroupTopology(
            name=group,
            primary=kept_primary,
            replicas=kept_replicas,
            drained=last.drained if last else (),
            config_epoch=kept_epoch,
            agreeing=count,
            sentinels=configured,
            health=Health.DEGRADED if kept_primary is not None else Health.UNKNOWN,
            reason=reason,
            provisional=last.provisional if last else False,
        )

    if winner is None:
        if count == 0:
            return keep("no Sentinel reports this group")
        return keep(
            f"no majority: best candidate has {count} of {configured} Sentinels "
            f"(need {majority(configured)})"
        )
    if last is not None and last.primary is not None and winner.config_epoch < kept_epoch:
        return keep(
            f"Sentinels agree on {winner.primary} at epoch {winner.config_epoch}, "
            f"older than published epoch {kept_epoch}"
        )
    if role_check and winner.primary != kept_primary and roles.get(winner.primary) != "master":
        said = roles.get(winner.primary) or "no answer"
        return keep(f"candidate {winner.primary} does not report master yet ({said})")
    replicas = tuple(sorted(r for r in winner.replicas if r != winner.primary))
    return GroupTopology(
        name=group,
        primary=winner.primary,
        replicas=replicas,
        drained=tuple(sorted(r for r in winner.drained if r != winner.primary)),
        config_epoch=winner.config_epoch,
        agreeing=count,
        sentinels=configured,
        health=Health.OK,
        reason="",
    )


def candidates_to_verify(
    views: Sequence[SentinelView],
    groups: Sequence[str],
    configured: int,
    published: Mapping[str, Address | None],
) -> dict[str, Address]:
    """Candidates that differ from what is published and so need a ``ROLE`` check.

    Kept separate from :func:`decide_group` so that the watcher asks each node
    at most once per round, and only when a change is on the table.
    """
    out: dict[str, Address] = {}
    for group in groups:
        winner, _ = candidate(views, group, configured)
        if winner is not None and winner.primary != published.get(group):
            out[group] = winner.primary
    return out
