"""The pure agreement rules: who is the primary, given what every Sentinel said."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from redis_sentinel_watch import Address, GroupTopology, GroupView, Health, SentinelView
from redis_sentinel_watch.agreement import (
    Promotion,
    PromotionStatus,
    assess_dissent,
    candidate,
    decide_group,
    majority,
    promotion_aborted_by,
    promotion_from_event,
    promotion_from_views,
    promotion_status,
)
from redis_sentinel_watch.replies import SentinelEvent

S = [Address("127.0.0.1", 26379 + i) for i in range(5)]
A = Address("127.0.0.1", 7001)
B = Address("127.0.0.1", 7002)
C = Address("127.0.0.1", 7003)


def view(sentinel: Address, primary: Address, epoch: int, *, tilt: bool = False) -> SentinelView:
    return SentinelView(sentinel, True, {"g": GroupView("g", primary, epoch)}, tilt=tilt)


def down(sentinel: Address) -> SentinelView:
    return SentinelView(sentinel, False, error="refused")


def published(primary: Address, epoch: int) -> GroupTopology:
    return GroupTopology("g", primary, config_epoch=epoch, health=Health.OK)


def test_majority_of_configured_not_of_answering() -> None:
    """Two of five configured Sentinels agreeing is not a majority, even if the rest are down."""
    views = [view(S[0], A, 1), view(S[1], A, 1), down(S[2]), down(S[3]), down(S[4])]
    topo = decide_group("g", views, 5, None, {A: "master"})
    assert topo.primary is None
    assert topo.health is Health.UNKNOWN
    assert majority(5) == 3


def test_agreed_primary_published_after_role_check() -> None:
    """A majority at one epoch plus ROLE=master publishes the candidate as OK."""
    views = [view(S[0], A, 1), view(S[1], A, 1), view(S[2], B, 0)]
    topo = decide_group("g", views, 3, None, {A: "master"})
    assert topo.primary == A and topo.health is Health.OK and topo.agreeing == 2


def test_candidate_not_reporting_master_is_not_published() -> None:
    """A node Sentinel names but that still says 'slave' keeps the last good primary."""
    views = [view(s, B, 2) for s in S[:3]]
    topo = decide_group("g", views, 3, published(A, 1), {B: "slave"})
    assert topo.primary == A
    assert topo.health is Health.DEGRADED
    assert "does not report master" in topo.reason


def test_unreachable_candidate_is_not_published() -> None:
    """A candidate that cannot be asked for its ROLE is not published."""
    views = [view(s, B, 2) for s in S[:3]]
    topo = decide_group("g", views, 3, published(A, 1), {})
    assert topo.primary == A


def test_lower_epoch_never_overrides() -> None:
    """Stale Sentinels agreeing on an older epoch cannot move traffic back (redis#12798)."""
    views = [view(s, A, 1) for s in S[:3]]
    topo = decide_group("g", views, 3, published(B, 2), {A: "master"})
    assert topo.primary == B
    assert topo.health is Health.DEGRADED


def test_tilt_sentinels_do_not_vote() -> None:
    """Sentinels in TILT neither confirm nor block."""
    views = [view(S[0], A, 1), view(S[1], A, 1, tilt=True), view(S[2], A, 1, tilt=True)]
    topo = decide_group("g", views, 3, None, {A: "master"})
    assert topo.primary is None


def test_no_agreement_keeps_last_good() -> None:
    """All Sentinels down: keep the last primary, report degraded."""
    topo = decide_group("g", [down(s) for s in S[:3]], 3, published(A, 4), {})
    assert topo.primary == A and topo.config_epoch == 4
    assert topo.health is Health.DEGRADED


def test_role_check_off_trusts_sentinels() -> None:
    """With role_check disabled the majority alone decides."""
    views = [view(s, B, 2) for s in S[:3]]
    topo = decide_group("g", views, 3, published(A, 1), {}, role_check=False)
    assert topo.primary == B


addresses = st.sampled_from([A, B, C])
epochs = st.integers(min_value=0, max_value=5)
answers = st.one_of(
    st.none(),
    st.tuples(addresses, epochs, st.booleans()),
)


@given(
    st.lists(answers, min_size=1, max_size=5),
    st.one_of(st.none(), st.tuples(addresses, epochs)),
    st.dictionaries(addresses, st.sampled_from(["master", "slave", ""])),
)
def test_properties(
    raw: list[tuple[Address, int, bool] | None],
    last_raw: tuple[Address, int] | None,
    roles: dict[Address, str],
) -> None:
    """For any input: the published primary is the last one or a majority-confirmed,
    non-TILT, ROLE=master candidate at an epoch not lower than the last."""
    configured = len(raw)
    views = [
        down(S[i]) if a is None else view(S[i], a[0], a[1], tilt=a[2]) for i, a in enumerate(raw)
    ]
    last = published(*last_raw) if last_raw else None
    topo = decide_group("g", views, configured, last, roles)
    if last is not None and topo.primary == last.primary:
        return
    if topo.primary is None:
        assert last is None
        return
    votes = sum(
        1
        for a in raw
        if a is not None and not a[2] and a[0] == topo.primary and a[1] == topo.config_epoch
    )
    assert votes >= majority(configured)
    assert roles.get(topo.primary) == "master"
    if last is not None:
        assert topo.config_epoch >= last.config_epoch
    assert topo.health is Health.OK


# --------------------------------------------------------------------------- react first


def promo(
    candidate: Address = B,
    replacing: Address = A,
    base: int = 1,
    *,
    leader: Address | None = S[0],
    seen_round: int = 5,
    reported: bool = False,
) -> Promotion:
    return Promotion(
        "g", candidate, replacing, base, leader, "+selected-slave", seen_round, reported
    )


def leading(sentinel: Address, primary: Address, epoch: int, promoted: Address) -> SentinelView:
    gv = GroupView("g", primary, epoch, failover_in_progress=True, promoted=promoted)
    return SentinelView(sentinel, True, {"g": gv})


def test_promoted_replica_published_before_majority() -> None:
    """The selected replica saying master is published while every Sentinel still names the
    old primary at the old epoch; it keeps the old epoch and is marked provisional."""
    views = [view(s, A, 1) for s in S[:3]]
    topo = decide_group("g", views, 3, published(A, 1), {B: "master"}, promotion=promo())
    assert topo.primary == B and topo.provisional and topo.health is Health.OK
    assert topo.config_epoch == 1


def test_promotion_waits_for_role_master() -> None:
    """Selected but still a replica (or not answering): nothing moves."""
    views = [view(s, A, 1) for s in S[:3]]
    for said in ({B: "slave"}, {}):
        topo = decide_group("g", views, 3, published(A, 1), said, promotion=promo())
        assert topo.primary == A and not topo.provisional


def test_promotion_about_another_primary_is_ignored() -> None:
    """A failover replacing a node we do not publish (old news, stale Sentinel) moves nothing."""
    views = [view(s, C, 2) for s in S[:3]]
    topo = decide_group(
        "g", views, 3, published(C, 2), {B: "master"}, promotion=promo(replacing=A, base=2)
    )
    assert topo.primary == C and not topo.provisional


def test_provisional_kept_while_old_primary_claims_master() -> None:
    """A woken old primary that still says master does not win back while the failover runs."""
    views = [leading(S[0], A, 1, B), view(S[1], A, 1), view(S[2], A, 1)]
    last = decide_group("g", views, 3, published(A, 1), {B: "master"}, promotion=promo())
    again = decide_group(
        "g", views, 3, last, {A: "master"}, promotion=promo(reported=True), views_round=6
    )
    assert again.primary == B and again.provisional


def test_confirmation_clears_provisional() -> None:
    """Once a majority names the candidate at a higher epoch it is simply the primary."""
    views = [view(s, A, 1) for s in S[:3]]
    last = decide_group("g", views, 3, published(A, 1), {B: "master"}, promotion=promo())
    confirmed = [view(S[0], B, 2), view(S[1], B, 2), view(S[2], A, 1)]
    p = promo(reported=True)
    assert promotion_status(p, confirmed, 3, {}, 9)[0] is PromotionStatus.SETTLED
    topo = decide_group("g", confirmed, 3, last, {}, promotion=p, views_round=9)
    assert topo.primary == B and not topo.provisional and topo.config_epoch == 2


def test_sentinels_settling_elsewhere_win() -> None:
    """If the majority settles on another node at a higher epoch, follow the Sentinels."""
    views = [view(s, A, 1) for s in S[:3]]
    last = decide_group("g", views, 3, published(A, 1), {B: "master"}, promotion=promo())
    other = [view(s, C, 2) for s in S[:3]]
    topo = decide_group(
        "g", other, 3, last, {C: "master", B: "master"}, promotion=promo(reported=True)
    )
    assert topo.primary == C and not topo.provisional


def test_abort_returns_to_sentinels_choice() -> None:
    """The leader no longer running the failover (poll after we learned of it) is an abort;
    the Sentinels' primary comes back once its ROLE says master."""
    p = promo(reported=True, seen_round=5)
    views = [view(s, A, 1) for s in S[:3]]
    last = decide_group("g", views, 3, published(A, 1), {B: "master"}, promotion=p)
    assert last.primary == B
    assert promotion_status(p, views, 3, {}, 5)[0] is PromotionStatus.ACTIVE  # same round
    status, why = promotion_status(p, views, 3, {}, 6)
    assert status is PromotionStatus.ABORTED and "no longer" in why
    topo = decide_group("g", views, 3, last, {A: "master"}, promotion=p, views_round=6)
    assert topo.primary == A and not topo.provisional
    dead = decide_group("g", views, 3, last, {}, promotion=p, views_round=6)
    assert dead.primary == B and dead.provisional and dead.health is Health.DEGRADED


def test_leader_still_running_is_not_an_abort() -> None:
    """The leader with failover_in_progress, or after +promoted-slave (higher epoch), is active."""
    p = promo(reported=True)
    running = [leading(S[0], A, 1, B), view(S[1], A, 1), view(S[2], A, 1)]
    assert promotion_status(p, running, 3, {}, 9)[0] is PromotionStatus.ACTIVE
    promoted = [view(S[0], A, 2), view(S[1], A, 1), view(S[2], A, 1)]
    assert promotion_status(p, promoted, 3, {}, 9)[0] is PromotionStatus.ACTIVE


def test_candidate_demoted_again_is_an_abort() -> None:
    """A candidate that said master and now says slave was converted back: follow Sentinels."""
    p = promo(reported=True)
    views = [view(s, A, 1) for s in S[:3]]
    assert promotion_status(p, views, 3, {B: "slave"}, 5)[0] is PromotionStatus.ABORTED


def test_events_name_the_promotion() -> None:
    """+selected-slave and friends (leader only) and +switch-master give a promotion of the
    published primary; other events, groups and primaries give none."""
    last = published(A, 3)
    payload = "slave 127.0.0.1:7002 127.0.0.1 7002 @ g 127.0.0.1 7001"
    for channel in ("+selected-slave", "+failover-state-wait-promotion", "+promoted-slave"):
        ev = SentinelEvent(S[1], channel, payload, "g", B, A)
        p = promotion_from_event(ev, last, 4)
        assert p == Promotion("g", B, A, 3, S[1], channel, 4)
    sw = SentinelEvent(S[2], "+switch-master", "g 127.0.0.1 7001 127.0.0.1 7002", "g", B, A)
    p = promotion_from_event(sw, last)
    assert p is not None and p.leader is None and p.candidate == B
    assert promotion_from_event(SentinelEvent(S[1], "+sdown", payload, "g", B, A), last) is None
    old = SentinelEvent(S[1], "+selected-slave", payload, "g", B, C)
    assert promotion_from_event(old, last) is None
    assert promotion_from_event(SentinelEvent(S[1], "+selected-slave", "", "h", B, A), last) is None
    assert (
        promotion_from_event(SentinelEvent(S[1], "+selected-slave", payload, "g", B, A), None)
        is None
    )


def test_only_the_leader_aborts() -> None:
    """A loser's late -failover-abort-not-elected does not cancel the winner's promotion."""
    p = promo(leader=S[0])
    mine = SentinelEvent(
        S[0], "-failover-abort-slave-timeout", "master g 127.0.0.1 7001", "g", A, A
    )
    theirs = SentinelEvent(
        S[1], "-failover-abort-not-elected", "master g 127.0.0.1 7001", "g", A, A
    )
    assert promotion_aborted_by(mine, p)
    assert not promotion_aborted_by(theirs, p)
    assert not promotion_aborted_by(mine, promo(leader=None))


def test_poll_shows_the_promotion() -> None:
    """A leader's poll with failover_in_progress and a promoted replica is a promotion."""
    views = [leading(S[2], A, 1, B), view(S[0], A, 1)]
    p = promotion_from_views(views, published(A, 1), 7)
    assert p == Promotion("g", B, A, 1, S[2], "poll:promoted", 7)
    assert promotion_from_views(views, published(C, 1)) is None
    assert promotion_from_views([view(S[0], A, 1)], published(A, 1)) is None


promotions = st.one_of(
    st.none(),
    st.builds(
        Promotion,
        group=st.just("g"),
        candidate=addresses,
        replacing=addresses,
        base_epoch=epochs,
        leader=st.one_of(st.none(), st.sampled_from(S[:5])),
        source=st.just("+selected-slave"),
        seen_round=st.integers(0, 3),
        reported_master=st.booleans(),
    ),
)
roles_st = st.dictionaries(addresses, st.sampled_from(["master", "slave", ""]))
leader_answers = st.one_of(
    st.none(),
    st.tuples(addresses, epochs, st.booleans(), st.booleans(), st.one_of(st.none(), addresses)),
)


def build_views(
    raw: list[tuple[Address, int, bool, bool, Address | None] | None],
) -> list[SentinelView]:
    out = []
    for i, a in enumerate(raw):
        if a is None:
            out.append(down(S[i]))
        else:
            gv = GroupView("g", a[0], a[1], failover_in_progress=a[3], promoted=a[4])
            out.append(SentinelView(S[i], True, {"g": gv}, tilt=a[2]))
    return out


@given(
    st.lists(leader_answers, min_size=1, max_size=5),
    st.one_of(st.none(), st.tuples(addresses, epochs, st.booleans())),
    roles_st,
    promotions,
    st.integers(0, 4),
)
def test_promotion_properties(
    raw: list[tuple[Address, int, bool, bool, Address | None] | None],
    last_raw: tuple[Address, int, bool] | None,
    roles: dict[Address, str],
    p: Promotion | None,
    views_round: int,
) -> None:
    """For any input: a provisional primary is the promotion's candidate, replacing what we
    published, never reported 'slave', with no Sentinel majority at a higher epoch, at the
    published epoch; a non-provisional change obeys the majority rules; and a promotion that
    is not active changes nothing compared with having none."""
    configured = len(raw)
    views = build_views(raw)
    last = None
    if last_raw is not None:
        last = GroupTopology(
            "g", last_raw[0], config_epoch=last_raw[1], health=Health.OK, provisional=last_raw[2]
        )
    topo = decide_group("g", views, configured, last, roles, promotion=p, views_round=views_round)
    without = decide_group("g", views, configured, last, roles)
    if p is None or promotion_status(p, views, configured, roles, views_round)[0] is not (
        PromotionStatus.ACTIVE
    ):
        assert topo == without
        return
    if topo == without:
        return
    # The promotion changed the answer: only ever to its candidate, provisionally.
    assert topo.provisional and topo.primary == p.candidate
    assert last is not None and last.primary in (p.replacing, p.candidate)
    assert roles.get(p.candidate) != "slave"
    assert roles.get(p.candidate) == "master" or p.reported_master or last.primary == p.candidate
    assert topo.config_epoch == last.config_epoch
    winner, _ = candidate(views, "g", configured)
    assert winner is None or winner.config_epoch <= p.base_epoch


# --------------------------------------------------------------------------- dissent


def dissent_of(views: list[SentinelView], configured: int = 5) -> dict[Address, tuple[str, ...]]:
    return {d.sentinel: d.reasons for d in assess_dissent(views, "g", configured, (), 0.0)}


def test_dissent_other_primary() -> None:
    """A Sentinel naming another node at the majority's epoch is outvoted, and reported."""
    views = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], A, 3), view(S[3], B, 3), down(S[4])]
    assert dissent_of(views) == {S[3]: ("other-primary",)}
    (d,) = assess_dissent(views, "g", 5, (), 0.0)
    assert (d.primary, d.epoch, d.majority_primary, d.majority_epoch) == (B, 3, A, 3)


def test_dissent_higher_epoch() -> None:
    """A rogue Sentinel at a higher epoch loses the vote (the majority keeps A) but is reported;
    a Sentinel merely behind on the epoch of the same primary is not dissent."""
    views = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], A, 3), view(S[3], C, 9)]
    views.append(view(S[4], A, 1))
    assert dissent_of(views) == {S[3]: ("other-primary", "higher-epoch")}
    topo = decide_group("g", views, 5, published(A, 3), {A: "master"}, dissent_grace_s=0)
    assert topo.primary == A and topo.config_epoch == 3 and topo.health is Health.OK
    assert [(d.sentinel, d.primary, d.epoch) for d in topo.dissent] == [(S[3], C, 9)]
    same_primary = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], A, 7)]
    assert dissent_of(same_primary, 3) == {S[2]: ("higher-epoch",)}


def test_dissent_tilt() -> None:
    """A Sentinel in TILT does not vote; it is reported even when its view matches."""
    views = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], A, 3, tilt=True)]
    assert dissent_of(views, 3) == {S[2]: ("tilt",)}


def test_no_dissent_without_a_majority_or_from_unreachable_sentinels() -> None:
    """Nothing to dissent from without a majority; an unreachable Sentinel has no view."""
    assert dissent_of([view(S[0], A, 1), view(S[1], B, 2), down(S[2])], 3) == {}
    assert dissent_of([view(S[0], A, 1), view(S[1], A, 1), down(S[2])], 3) == {}


def test_dissent_reported_after_the_grace_and_dated_from_first_seen() -> None:
    """A disagreement is reported once it has lasted dissent_grace_s (the leader running
    ahead during a failover is shorter); unchanged, it keeps its date from decision to
    decision; a different disagreement starts again. dissent_seen is not compared."""
    views = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], C, 9)]

    def decide(last: GroupTopology | None, now: float, vs: list[SentinelView]) -> GroupTopology:
        return decide_group("g", vs, 3, last, {A: "master"}, now=now, dissent_grace_s=5.0)

    first = decide(published(A, 3), 100.0, views)
    assert first.dissent == () and [d.since for d in first.dissent_seen] == [100.0]
    assert first == replace(first, dissent_seen=())  # dissent_seen is not compared
    later = decide(first, 104.9, views)
    assert later.dissent == ()
    reported = decide(later, 105.0, views)
    assert [(d.sentinel, d.since) for d in reported.dissent] == [(S[2], 100.0)]
    assert reported != later  # a reported dissent is a change of topology
    other = [view(S[0], A, 3), view(S[1], A, 3), view(S[2], C, 10)]
    moved = decide(reported, 106.0, other)
    assert moved.dissent == () and [d.since for d in moved.dissent_seen] == [106.0]
    cleared = decide(moved, 200.0, [view(s, A, 3) for s in S[:3]])
    assert cleared.dissent == () and cleared.dissent_seen == ()


@given(
    st.lists(
        st.tuples(st.sampled_from([A, B, C]), st.integers(0, 4), st.booleans()),
        min_size=5,
        max_size=5,
    )
)
def test_dissent_never_changes_the_decision(answers: list[tuple[Address, int, bool]]) -> None:
    """Dissent is reported next to the decision, never instead of it: the primary, epoch and
    health are what they are without it, and a Sentinel is reported only if it differs from
    the majority pair (or is in TILT)."""
    views = [view(s, p, e, tilt=t) for s, (p, e, t) in zip(S, answers, strict=True)]
    last = published(A, 0)
    topo = decide_group("g", views, 5, last, {A: "master", B: "master", C: "master"})
    plain = decide_group(
        "g", views, 5, last, {A: "master", B: "master", C: "master"}, dissent_grace_s=1e9
    )
    assert (topo.primary, topo.config_epoch, topo.health) == (
        plain.primary,
        plain.config_epoch,
        plain.health,
    )
    winner, _ = candidate(views, "g", 5)
    for d in topo.dissent:
        gv = next(v for v in views if v.sentinel == d.sentinel)
        assert winner is not None
        assert gv.tilt or (gv.groups["g"].primary, gv.groups["g"].config_epoch) != (
            winner.primary,
            winner.config_epoch,
        )
