"""Which resources a sidecar receives: its *profile*, decided from its Node.

A profile is everything that makes one sidecar's snapshot differ from
another's:

* the groups it receives: all by default; a group with ``sidecars:`` in the
  config goes only to nodes whose cluster is listed (``clusters``) and whose
  top-level node metadata has the listed values (``metadata``);
* where it listens for a group: the config's ``listen`` unless the node's
  metadata overrides it (``sentinel_xds: {listen: {GROUP: "HOST:PORT"}}``,
  written by ``sentinel-xds bootstrap --listen GROUP=HOST:PORT``), which is how
  two sidecars share one host;
* where its Envoy finds a group's password files: the config's
  ``sidecar_password_file`` unless ``sidecar_password_file_by_cluster`` names
  another path for the node's cluster (sidecars of different applications keep
  the file in different places);
* whether it is gRPC's own xDS client, which also needs API listeners.

Profiles are values, so every node with the same profile shares one snapshot
(built once per topology version by :class:`xds.ads.cache.SnapshotCache`). The
plain profile (every group, no override, default password paths, not gRPC) is
``None``, the cache's default, so ``cache.current()`` is what an ordinary
sidecar gets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import structlog

from redis_sentinel_watch import Address, AddressError
from xds.ads.discovery_request import NodeInfo
from xds.ads.node import is_grpc_client
from xds.ads.snapshot import Snapshot
from xds.resources.bootstrap import METADATA_KEY
from xds.resources.redis_group import GroupSpec, PasswordFile, SidecarAuth
from xds.resources.snapshot import build_snapshot

__all__ = ["Profile", "Profiles", "SidecarSelector", "Targeted"]

log = structlog.get_logger("xds.profiles")


@dataclass(frozen=True)
class SidecarSelector:
    """Which sidecars receive a group: node cluster in ``clusters`` (if given) and every
    ``metadata`` key equal (as text) to the node's top-level metadata value (if given)."""

    clusters: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()


class Targeted(Protocol):
    """What profiles need of a group's config: its name and which sidecars receive it."""

    @property
    def name(self) -> str: ...

    @property
    def sidecars(self) -> SidecarSelector | None: ...

    @property
    def upstream_auth(self) -> SidecarAuth | None: ...

    @property
    def downstream_auth(self) -> SidecarAuth | None: ...


@dataclass(frozen=True)
class Profile:
    """One snapshot's worth of per-node choices. ``upstream_files`` and
    ``downstream_files`` hold (group, path) only where the node's cluster has a path
    other than the default, so nodes of clusters without one share the plain snapshot."""

    groups: tuple[str, ...]
    listen: tuple[tuple[str, Address], ...] = ()
    grpc: bool = False
    upstream_files: tuple[tuple[str, str], ...] = ()
    downstream_files: tuple[tuple[str, str], ...] = ()


def _matches(selector: SidecarSelector | None, node: NodeInfo | None) -> bool:
    if selector is None:
        return True
    if node is None:
        return False
    if selector.clusters and node.cluster not in selector.clusters:
        return False
    for key, want in selector.metadata:
        have = node.metadata.get(key)
        if isinstance(have, bool):
            have = "true" if have else "false"
        elif isinstance(have, float) and have.is_integer():
            have = str(int(have))  # Struct numbers are doubles
        if have is None or str(have) != want:
            return False
    return True


class Profiles:
    """The node → profile rule for one config, and profile → snapshot."""

    def __init__(self, groups: Sequence[Targeted]) -> None:
        self._groups = tuple(groups)
        self._names = tuple(g.name for g in groups)

    def of(self, node: NodeInfo | None) -> Profile | None:
        """The node's profile; ``None`` for the plain one."""
        chosen = tuple(g.name for g in self._groups if _matches(g.sidecars, node))
        listen = self._listen_overrides(node, chosen)
        grpc = is_grpc_client(node)
        up: tuple[tuple[str, str], ...] = ()
        down: tuple[tuple[str, str], ...] = ()
        if not grpc and node is not None:  # gRPC clients get no password paths at all
            up = self._password_files(node.cluster, chosen, upstream=True)
            down = self._password_files(node.cluster, chosen, upstream=False)
        if chosen == self._names and not listen and not grpc and not up and not down:
            return None
        return Profile(chosen, listen, grpc, up, down)

    def _password_files(
        self, cluster: str, chosen: tuple[str, ...], *, upstream: bool
    ) -> tuple[tuple[str, str], ...]:
        """(group, path) for each chosen group whose file is elsewhere on ``cluster``."""
        out: list[tuple[str, str]] = []
        for g in self._groups:
            auth = g.upstream_auth if upstream else g.downstream_auth
            if g.name in chosen and isinstance(auth, PasswordFile):
                path = auth.for_cluster(cluster)
                if path != auth.path:
                    out.append((g.name, path))
        return tuple(out)

    def _listen_overrides(
        self, node: NodeInfo | None, chosen: tuple[str, ...]
    ) -> tuple[tuple[str, Address], ...]:
        if node is None:
            return ()
        ours = node.metadata.get(METADATA_KEY)
        raw: Any = ours.get("listen") if isinstance(ours, Mapping) else None
        if not isinstance(raw, Mapping):
            return ()
        out: list[tuple[str, Address]] = []
        for group, text in sorted(raw.items()):
            if group not in self._names:
                log.warning("xds.node.bad_listen", node=node.id, group=group, error="unknown group")
                continue
            try:
                addr = Address.parse(str(text))
            except AddressError as exc:
                log.warning("xds.node.bad_listen", node=node.id, group=group, error=str(exc))
                continue
            if group in chosen:
                out.append((group, addr))
        return tuple(out)

    def snapshot(self, profile: Profile | None, specs: Sequence[GroupSpec]) -> Snapshot:
        """The snapshot for ``profile`` given every group's current spec."""
        if profile is None:
            return build_snapshot(specs)
        listen, up, down = (
            dict(profile.listen),
            dict(profile.upstream_files),
            dict(profile.downstream_files),
        )
        picked = [
            replace(
                s,
                listen=listen.get(s.name, s.listen),
                upstream_auth=_moved(s.upstream_auth, up.get(s.name)),
                downstream_auth=_moved(s.downstream_auth, down.get(s.name)),
            )
            for s in specs
            if s.name in profile.groups
        ]
        if profile.grpc:  # gRPC clients do not speak Redis: they get no Redis passwords
            picked = [replace(s, upstream_auth=None, downstream_auth=None) for s in picked]
        return build_snapshot(picked, api_listeners=profile.grpc)


def _moved(auth: SidecarAuth | None, path: str | None) -> SidecarAuth | None:
    """``auth`` read from ``path`` instead (when the profile names one for its group)."""
    if path is None or not isinstance(auth, PasswordFile):
        return auth
    return PasswordFile(path, auth.username)
