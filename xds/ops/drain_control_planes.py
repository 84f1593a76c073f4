"""The control planes a drain waits for: settled before it, routing every sidecar after it.

A switchover is only finished for the applications when every sidecar
routes to the new primary, and only the control planes know that: their
admin ``/status`` says, per sidecar, which primary its ACKed Cluster and
endpoints point to. So before anything changes the drain refuses unless
every control plane (``--admin``) is reachable and settled on the current
primary; while writes are paused it tells each one a drain is under way (a
label on its failover timeline) and polls until all of them route every
connected sidecar to the new primary. The pause budget is the deadline, so
the clients used then have the quick timeout (:meth:`ControlPlanes.requick`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from xds.ads.sidecars import SyncState
from xds.ads.typeurls import CLUSTER, ENDPOINT, short_type
from xds.ops.admin_client import AdminClient, AdminError
from xds.ops.drain_output import Steps
from xds.ops.drain_plan import DrainRefusedError
from xds.service.admin_documents import StatusDocument

__all__ = ["ROUTED_TYPES", "ControlPlanes"]

ROUTED_TYPES = (short_type(CLUSTER), short_type(ENDPOINT))


class ControlPlanes:
    """The admin APIs at ``bases`` (none: nothing to wait for), for ``group``.

    ``admins`` answer within ``timeout_s``; ``paused`` (used while writes are
    paused) within ``quick_s``. ``step`` records what they said.
    """

    def __init__(
        self,
        group: str,
        bases: Sequence[str],
        token: Secret | None,
        timeout_s: float,
        quick_s: float,
        step: Steps,
    ) -> None:
        self.group = group
        self._bases = tuple(bases)
        self._token = token
        self._step = step
        self.admins = [AdminClient(a, timeout_s=timeout_s, token=token) for a in self._bases]
        self.paused: list[AdminClient] = []
        self.requick(quick_s)

    def requick(self, quick_s: float) -> None:
        """Use ``quick_s`` as the timeout while writes are paused (the budget shrank)."""
        self.paused = [AdminClient(a, timeout_s=quick_s, token=self._token) for a in self._bases]

    @property
    def bases(self) -> list[str]:
        return [a.base for a in self.admins]

    def routes(self, status: StatusDocument, primary: Address) -> tuple[bool, str]:
        """(does this control plane route every sidecar to ``primary``, why not)."""
        ok, why, _ = self._routes(status, primary)
        return ok, why

    def _routes(self, status: StatusDocument, primary: Address) -> tuple[bool, str, str]:
        """:meth:`routes`, and how many sidecars are there ("2 of 3 sidecars") for the
        progress of :meth:`wait_routed`."""
        group = status.group(self.group)
        if group is None:
            return False, f"does not serve group {self.group!r}", "group not served"
        if group.primary != str(primary):
            return False, f"routes {self.group} to {group.primary}", f"still at {group.primary}"
        late = []
        sidecars = status.sidecars
        for sc in sidecars:
            states = [ts.state for t in ROUTED_TYPES if (ts := sc.type(t)) is not None]
            routes = sc.primaries
            synced = bool(states) and all(s is SyncState.SYNCED for s in states)
            if not states:
                continue  # not subscribed to clusters (e.g. listeners only)
            if not synced or (self.group in routes and routes[self.group] != str(primary)):
                late.append(
                    f"{sc.node_id or sc.stream_id} "
                    f"({'/'.join(str(s) for s in states)}, routes {routes.get(self.group)})"
                )
        there = f"{len(sidecars) - len(late)} of {len(sidecars)} sidecars ACKed it"
        if late:
            return (
                False,
                f"{len(late)}/{len(sidecars)} sidecars not there: {', '.join(late)}",
                there,
            )
        return True, f"{len(sidecars)} sidecar(s) route to {primary}", there

    def check(self, primary: Address) -> None:
        """Before anything changes: every control plane sees the same primary, all synced."""
        for admin in self.admins:
            try:
                status = admin.status()
            except AdminError as exc:
                raise DrainRefusedError(
                    f"control plane {admin.base} unreachable ({exc}); the drain waits for its "
                    "sidecars, so it must be reachable (--admin)"
                ) from exc
            ok, why = self.routes(status, primary)
            if not ok:
                raise DrainRefusedError(
                    f"control plane {admin.base} is not settled: {why}; fix that first "
                    "(sentinel-xds status)"
                )
            self._step("drain.checked", f"{admin.base}: {why}")

    def notify(self, old: Address, pause_ms: int) -> None:
        """Tell each control plane a drain of ``old`` is under way (a label; failures warn)."""
        ttl = max(pause_ms / 1000 * 4, 30.0)
        for admin in self.paused:
            try:
                admin.notify_drain(self.group, old, ttl)
            except AdminError as exc:  # only a label on the timeline: go on
                self._step.say(f"warning: could not tell {admin.base} about the drain: {exc}")

    def wait_routed(self, new: Address, deadline: float) -> str | None:
        """Poll until every control plane routes every sidecar to ``new``; if that is not
        so by ``deadline`` (``time.monotonic()``), return why not."""
        waiting = {a.base: a for a in self.paused}
        why: dict[str, str] = {}
        seen: dict[str, str] = {}
        if not waiting:
            return None
        wait = self._step.wait(
            f"{len(waiting)} control plane(s) to route every sidecar to {new} (ACKed)"
        )
        while waiting:
            for base, admin in list(waiting.items()):
                try:
                    ok, why[base], seen[base] = self._routes(admin.status(), new)
                except AdminError as exc:
                    ok, why[base], seen[base] = False, str(exc), "no answer"
                if ok:
                    self._step("drain.sidecars_acked", f"{base}: {why[base]}")
                    del waiting[base]
            if waiting:
                wait.saw("; ".join(f"{b}: {seen[b]}" for b in waiting))
            if waiting and time.monotonic() >= deadline:
                return (
                    "control plane(s) did not route every sidecar to the new primary in time: "
                    + "; ".join(f"{b}: {why.get(b, '?')}" for b in waiting)
                )
            if waiting:
                time.sleep(0.01)
        return None
