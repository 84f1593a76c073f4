"""``sentinel-xds status`` and ``events``: the admin JSON as tables for people, and an exit code.

In the spirit of ``istioctl proxy-status``: one line per group, per Sentinel
and per connected sidecar, each sidecar with SYNCED / STALE / NACKED per
resource type, then every problem spelled out (a NACK with Envoy's own error
text). Pure functions of the typed admin documents
(:mod:`xds.service.admin_documents`), so what an operator sees is unit-tested
without a server, and a renamed field fails mypy here.

Exit codes, so the command can drive an alert or a script: 0 when nothing is
wrong; 1 when anything is (a control plane unreachable or not ready, a group
degraded or left without a promotable replica (a synced one that is not
drained: a failover to an unsynced replica loses data), a Sentinel unreachable, in
TILT or disagreeing with the majority, a sidecar STALE or NACKED).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis_sentinel_watch.model import Health
from xds.ads.sidecars import SyncState
from xds.ads.typeurls import CLUSTER, ENDPOINT, LISTENER, short_type
from xds.ops.exits import EXIT_OK, EXIT_PROBLEMS
from xds.service.admin_documents import FailoverEvent, GroupState, StatusDocument, TypeSync

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "TYPE_COLUMNS",
    "problems",
    "render_events",
    "render_status",
    "status_exit_code",
    "table",
]


#: (column header, resource type as it appears in /status)
TYPE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("CDS", short_type(CLUSTER)),
    ("EDS", short_type(ENDPOINT)),
    ("LDS", short_type(LISTENER)),
)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces (no trailing blanks)."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (header, *rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _str(value: object, default: str = "-") -> str:
    return default if value is None or value == "" else str(value)


def _peer(peer: str) -> str:
    """gRPC peer strings look like ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    for prefix in ("ipv4:", "ipv6:"):
        if peer.startswith(prefix):
            return peer[len(prefix) :]
    return peer


def problems(status: StatusDocument) -> list[str]:
    """Everything wrong in one control plane's ``/status``, one line each."""
    out: list[str] = []
    if not status.ready:
        out.append(f"control plane not ready: {_str(status.reason, 'no reason given')}")
    for g in status.groups:
        if g.degraded or g.health is not Health.OK:
            out.append(
                f"group {g.name} {g.health}: {_str(g.reason, 'no agreement')} "
                f"({g.agreeing}/{g.sentinels} Sentinels agree)"
            )
        risk = g.failover_risk()
        if risk is not None:
            out.append(risk)
        out.extend(_dissent(g))
    for s in status.sentinels:
        if not s.reachable:
            out.append(f"sentinel {s.address} unreachable: {_str(s.error, '?')}")
        elif s.tilt:
            out.append(f"sentinel {s.address} in TILT mode (its vote is ignored)")
    for sc in status.sidecars:
        node = _str(sc.node_id, f"stream {sc.stream_id}")
        for _, type_name in TYPE_COLUMNS:
            ts = sc.type(type_name)
            if ts is None:
                continue
            if ts.state is SyncState.NACKED:
                detail = " ".join(ts.nack_detail.split())
                out.append(
                    f"sidecar {node} NACKED {type_name} version {_str(ts.nacked)}: "
                    f"{detail or 'no detail'}"
                )
            elif ts.state is SyncState.STALE:
                out.append(
                    f"sidecar {node} STALE on {type_name}: sent {_str(ts.sent)}, "
                    f"ACKed {_str(ts.acked, 'nothing')}"
                )
    return out


def _dissent(g: GroupState) -> list[str]:
    """Sentinels outvoted on ``g`` (TILT alone is listed with the Sentinel's own state)."""
    return [
        f"sentinel {d.sentinel} disagrees on group {g.name} ({', '.join(d.reasons)}): "
        f"says {_str(d.primary, 'nothing')} at epoch {_str(d.epoch)}, the majority "
        f"{d.majority_primary} at epoch {d.majority_epoch}"
        for d in g.dissent
        if d.reasons != ("tilt",)
    ]


def status_exit_code(statuses: Sequence[StatusDocument | None]) -> int:
    """1 if any control plane is unreachable (``None``) or has a problem, else 0."""
    for status in statuses:
        if status is None or problems(status):
            return EXIT_PROBLEMS
    return EXIT_OK


def _replicas(group: GroupState) -> str:
    if not group.replicas:
        return "-"
    return ", ".join(f"{r} (drained)" if r in group.drained else r for r in group.replicas)


def _replica(g: GroupState, address: str) -> str:
    return f"{address} (drained)" if address in g.drained else address


def _health(g: GroupState) -> str:
    return (
        g.health.value
        + (" (provisional)" if g.provisional else "")
        + (f": {g.reason}" if g.degraded and g.reason else "")
    )


def render_status(status: StatusDocument, source: str = "") -> str:
    """One control plane's ``/status`` as tables, then its problems."""
    parts: list[str] = []
    ready = "ready" if status.ready else f"NOT READY ({_str(status.reason)})"
    parts.append(f"control plane {source}: {ready}".replace("  ", " "))
    parts.append(
        table(
            ["GROUP", "PRIMARY", "REPLICAS", "SENTINELS", "EPOCH", "HEALTH"],
            [
                [
                    _str(g.name),
                    _str(g.primary, "(none)"),
                    _replicas(g),
                    f"{g.agreeing}/{g.sentinels} agree",
                    str(g.config_epoch),
                    _health(g),
                ]
                for g in status.groups
            ],
        )
    )
    replica_rows = [
        [g.name, _replica(g, s.address), s.sync.value, s.detail]
        for g in status.groups
        for s in g.replica_sync
    ]
    if replica_rows:
        parts.append(table(["GROUP", "REPLICA", "SYNC", "DETAIL"], replica_rows))
    if status.sentinels:
        parts.append(
            table(
                ["SENTINEL", "STATE"],
                [
                    [
                        s.address,
                        ("up (TILT)" if s.tilt else "up")
                        if s.reachable
                        else f"DOWN: {_str(s.error, '?')}",
                    ]
                    for s in status.sentinels
                ],
            )
        )
    if status.sidecars:
        rows = [
            [
                _str(sc.node_id, f"(stream {sc.stream_id})"),
                _str(sc.cluster),
                _peer(_str(sc.peer)),
                _str(sc.connected_since),
                *[_state(sc.type(type_name)) for _, type_name in TYPE_COLUMNS],
                ", ".join(f"{g}={p}" for g, p in sorted(sc.primaries.items())) or "-",
            ]
            for sc in status.sidecars
        ]
        parts.append(
            table(
                [
                    "SIDECAR",
                    "CLUSTER",
                    "ADDRESS",
                    "CONNECTED SINCE",
                    *(h for h, _ in TYPE_COLUMNS),
                    "ROUTES TO",
                ],
                rows,
            )
        )
    else:
        parts.append("no sidecar connected")
    found = problems(status)
    if found:
        parts.append(
            f"{len(found)} problem{'s' if len(found) != 1 else ''}:\n"
            + "\n".join(f"  - {p}" for p in found)
        )
    else:
        parts.append("no problems")
    return "\n\n".join(parts)


def _state(ts: TypeSync | None) -> str:
    if ts is None or ts.state is SyncState.NOT_SENT:
        return "-"
    return ts.state.value


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def render_events(failovers: Sequence[FailoverEvent]) -> str:
    """Failover timelines (oldest first); durations are from the first Sentinel sign."""
    if not failovers:
        return "no failover recorded since the control plane started"
    rows = []
    for f in failovers:
        acked = f"{f.acked}/{f.sidecars}"
        if f.superseded:
            acked += " (superseded)"
        rows.append(
            [
                _when(f.at),
                _str(f.group),
                f"{_str(f.old)} -> {_str(f.new)}",
                f"{_str(f.trigger)} ({_str(f.sign)})",
                _ms(f.detect_to_switch_ms),
                _ms(f.detect_to_push_ms),
                _ms(f.detect_to_acked_ms),
                acked,
            ]
        )
    return table(
        [
            "SWITCHED (UTC)",
            "GROUP",
            "OLD -> NEW",
            "TRIGGER (FIRST SIGN)",
            "SWITCH",
            "PUSH",
            "LAST ACK",
            "ACKED",
        ],
        rows,
    )
