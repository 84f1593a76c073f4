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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from .model import Address, GroupTopology, GroupView, Health, SentinelView

__all__ = ["Role", "candidate", "candidates_to_verify", "decide_group", "majority"]

Role = str  # "master", "slave", "sentinel" or "" when the node could not be asked


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


def decide_group(
    group: str,
    views: Sequence[SentinelView],
    configured: int,
    last: GroupTopology | None,
    roles: Mapping[Address, Role],
    role_check: bool = True,
) -> GroupTopology:
    """Decide one group's topology. Pure: same inputs, same answer.

    ``roles`` maps node address to what that node's own ``ROLE`` said; a missing
    entry means it was not asked or did not answer.
    """
    winner, count = candidate(views, group, configured)
    kept_primary = last.primary if last else None
    kept_epoch = last.config_epoch if last else 0
    kept_replicas = last.replicas if last else ()

    def keep(reason: str) -> GroupTopology:
        return GroupTopology(
            name=group,
            primary=kept_primary,
            replicas=kept_replicas,
            config_epoch=kept_epoch,
            agreeing=count,
            sentinels=configured,
            health=Health.DEGRADED if kept_primary is not None else Health.UNKNOWN,
            reason=reason,
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
