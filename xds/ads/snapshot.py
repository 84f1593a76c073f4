"""A snapshot: every resource a sidecar should have, as a plain value that checks itself.

Generic over what the resources mean: whoever builds a snapshot (for this
project :func:`xds.resources.snapshot.build_snapshot`) hands in Listeners,
Clusters and ClusterLoadAssignments plus the Listener → Cluster references its
filters make; :meth:`Snapshot.consistent` checks them, then the snapshot goes
to the cache. Versions are content
hashes over canonical bytes, so two control-plane replicas — or one restarted
— hand out the same versions for the same topology and Envoy sees no churn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import betterproto2
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.google.protobuf import Any

from xds.ads.typeurls import CLUSTER, ENDPOINT, LISTENER
from xds.ads.wire import delta_resource, sotw_body

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "InconsistentSnapshotError",
    "Snapshot",
    "TypeResources",
]

#: Make-before-break on one ADS stream: a Cluster must exist before the
#: endpoints that feed it, and both before a Listener that routes to it.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER)

#: Types whose SotW responses must carry the full set (LDS, CDS); EDS responses
#: carry only what was asked for.
FULL_STATE_TYPES = frozenset({LISTENER, CLUSTER})


#: distinct subscriptions remembered per type and snapshot (a bound against odd clients)
MAX_MEMOIZED_VIEWS = 256


@dataclass(frozen=True)
class SotwView:
    """What a SotW stream subscribed to ``names`` is sent: the names, their versions, the body."""

    names: frozenset[str]
    content: frozenset[tuple[str, str]]
    body: bytes


class InconsistentSnapshotError(ValueError):
    """A snapshot refers to a resource it does not contain."""


@dataclass(frozen=True)
class TypeResources:
    """All resources of one type: name → serialized ``Any``, with content versions.

    ``version`` covers the whole set (SotW ``version_info``); ``resource_versions``
    covers each resource alone (Delta ``Resource.version``), and ``delta_items``
    holds each as a serialized Delta ``Resource`` (name, version, ``Any``). All of
    it is computed once per snapshot, so a push costs framing only.
    """

    type_url: str
    items: Mapping[str, bytes]
    version: str
    resource_versions: Mapping[str, str] = field(default_factory=dict)
    delta_items: Mapping[str, bytes] = field(default_factory=dict)
    _views: dict[frozenset[str] | None, SotwView] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def of(cls, type_url: str, messages: Mapping[str, betterproto2.Message]) -> TypeResources:
        return cls.from_bytes(
            type_url, {name: bytes(Any.pack(msg)) for name, msg in messages.items()}
        )

    @classmethod
    def from_bytes(cls, type_url: str, packed: Mapping[str, bytes]) -> TypeResources:
        """From already-serialized ``Any`` messages."""
        items = dict(sorted(packed.items()))
        versions = {name: content_version({name: body}) for name, body in items.items()}
        delta = {name: delta_resource(name, versions[name], body) for name, body in items.items()}
        return cls(type_url, items, content_version(items), versions, delta)

    def sotw_view(self, names: frozenset[str] | None) -> SotwView:
        """The SotW response body (all but the nonce) for a subscription; ``None`` = wildcard.

        Memoized: a thousand streams subscribed alike share one body, so a push
        costs each stream only the nonce and the send. The memo is keyed by the
        subscribed names that exist in this snapshot, not by the subscription:
        a response carries only existing resources, so that is all the view
        depends on, and a key is then bounded by the snapshot's own names. A
        client's own set (up to 10,000 names of any length) is never kept, so
        odd subscriptions cannot pin memory until the next publish.
        """
        key = None if names is None else self._existing(names)
        view = self._views.get(key)
        if view is None:
            picked = self.select(key)
            view = SotwView(
                names=frozenset(n for n, _ in picked),
                content=frozenset((n, self.resource_versions.get(n, "")) for n, _ in picked),
                body=sotw_body(self.version, (b for _, b in picked), self.type_url),
            )
            if len(self._views) < MAX_MEMOIZED_VIEWS:
                self._views[key] = view
        return view

    def _existing(self, names: frozenset[str]) -> frozenset[str]:
        """``names`` ∩ this type's resource names, walking the smaller of the two."""
        if len(names) <= len(self.items):
            return frozenset(n for n in names if n in self.items)
        return frozenset(n for n in self.items if n in names)

    def select(self, names: Iterable[str] | None) -> list[tuple[str, bytes]]:
        """The resources named (all of them for ``None``), in name order."""
        if names is None:
            return list(self.items.items())
        return [(n, self.items[n]) for n in sorted(set(names)) if n in self.items]


def content_version(items: Mapping[str, bytes]) -> str:
    """A short hash over canonical (sorted name, bytes) pairs; empty set → fixed value."""
    digest = hashlib.sha256()
    for name in sorted(items):
        digest.update(len(name).to_bytes(4, "big") + name.encode())
        digest.update(len(items[name]).to_bytes(4, "big") + items[name])
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Snapshot:
    """Listeners, Clusters and ClusterLoadAssignments for one topology."""

    listeners: Mapping[str, Listener] = field(default_factory=dict)
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    endpoints: Mapping[str, ClusterLoadAssignment] = field(default_factory=dict)
    by_type: Mapping[str, TypeResources] = field(default_factory=dict, compare=False)
    #: listener name → the clusters its filters route to (declared by the builder,
    #: which knows the filters; the protocol only checks that they exist)
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def of(
        cls,
        listeners: Iterable[Listener],
        clusters: Iterable[Cluster],
        endpoints: Iterable[ClusterLoadAssignment],
        routes: Mapping[str, Iterable[str]] | None = None,
    ) -> Snapshot:
        ls = {m.name: m for m in listeners}
        cs = {m.name: m for m in clusters}
        es = {m.cluster_name: m for m in endpoints}
        by_type = {
            LISTENER: TypeResources.of(LISTENER, ls),
            CLUSTER: TypeResources.of(CLUSTER, cs),
            ENDPOINT: TypeResources.of(ENDPOINT, es),
        }
        refs = {name: tuple(targets) for name, targets in (routes or {}).items()}
        return cls(ls, cs, es, by_type, refs)

    def version(self, type_url: str) -> str:
        res = self.by_type.get(type_url)
        return res.version if res else ""

    @property
    def versions(self) -> dict[str, str]:
        return {t: r.version for t, r in self.by_type.items()}

    def consistent(self) -> None:
        """Raise :class:`InconsistentSnapshotError` if any reference dangles.

        Every EDS cluster needs its ClusterLoadAssignment; every route a
        listener declares needs its Cluster. Envoy would otherwise keep the
        cluster warming or the listener pointing nowhere (go-control-plane #59,
        #526).
        """
        for cluster in self.clusters.values():
            eds = cluster.eds_cluster_config
            service = (eds.service_name if eds else "") or cluster.name
            if service not in self.endpoints:
                raise InconsistentSnapshotError(
                    f"cluster {cluster.name!r} needs ClusterLoadAssignment {service!r}"
                )
        for listener, targets in self.routes.items():
            if listener not in self.listeners:
                raise InconsistentSnapshotError(
                    f"routes declared for missing listener {listener!r}"
                )
            for target in targets:
                if target not in self.clusters:
                    raise InconsistentSnapshotError(
                        f"listener {listener!r} routes to missing cluster {target!r}"
                    )
