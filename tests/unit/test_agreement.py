"""The pure agreement rules: who is the primary, given what every Sentinel said."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from redis_sentinel_watch import Address, GroupTopology, GroupView, Health, SentinelView
from redis_sentinel_watch.agreement import decide_group, majority

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
