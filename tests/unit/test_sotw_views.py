"""SotW response views are memoized by what they depend on: the subscribed names that
exist in the snapshot, never a client's own (unbounded) subscription set."""

from __future__ import annotations

from xds.ads.snapshot import ENDPOINT, MAX_MEMOIZED_VIEWS, TypeResources
from xds.ads.wire import sotw_body

RESOURCES = TypeResources.from_bytes(ENDPOINT, {"a": b"A", "b": b"B", "c": b"C"})


def test_a_view_carries_only_existing_resources() -> None:
    """A subscription naming missing resources gets the existing ones only, in name
    order; ``names`` is what the response carries (what the stream was sent)."""
    view = RESOURCES.sotw_view(frozenset({"c", "a", "missing"}))
    assert view.names == frozenset({"a", "c"})
    versions = RESOURCES.resource_versions
    assert view.content == {("a", versions["a"]), ("c", versions["c"])}
    assert view.body == sotw_body(RESOURCES.version, [b"A", b"C"], ENDPOINT)
    wildcard = RESOURCES.sotw_view(None)
    assert wildcard.names == frozenset({"a", "b", "c"})
    assert RESOURCES.sotw_view(frozenset({"nothing"})).names == frozenset()


def test_memo_keeps_no_client_names_and_shares_views() -> None:
    """Subscriptions that differ only in names the snapshot lacks share one view, and
    the memo's keys are subsets of the snapshot's names: thousands of long made-up
    names per client pin nothing until the next publish."""
    res = TypeResources.from_bytes(ENDPOINT, {"a": b"A", "b": b"B"})
    views = [
        res.sotw_view(frozenset({"a"} | {f"{i}-{'x' * 1000}-{j}" for j in range(100)}))
        for i in range(MAX_MEMOIZED_VIEWS + 10)
    ]
    assert all(view is views[0] for view in views)
    assert views[0].names == frozenset({"a"})
    keys = list(res._views)
    assert len(keys) == 1
    assert all(key is None or key <= res.items.keys() for key in keys)


def test_more_names_than_resources_walks_the_snapshot() -> None:
    """A subscription larger than the snapshot gives the same view as its intersection."""
    big = frozenset({"b"} | {f"n{i}" for i in range(10_000)})
    assert RESOURCES.sotw_view(big) is RESOURCES.sotw_view(frozenset({"b"}))
