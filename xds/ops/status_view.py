"""``sentinel-xds status`` and ``events``: the admin JSON as tables for people, and an exit code.

In the spirit of ``istioctl proxy-status``: one line per group, per Sentinel
and per connected sidecar, each sidecar with SYNCED / STALE / NACKED per
resource type, then every problem spelled out (a NACK with Envoy's own error
text). Pure functions of the JSON, so what an operator sees is unit-tested
without a server.

Exit codes, so the command can drive an alert or a script: 0 when nothing is
wrong; 1 when anything is (a control plane unreachable or not ready, a group
degraded or left without a promotable replica, a Sentinel unreachable or in
TILT, a sidecar STALE or NACKED).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

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

EXIT_OK = 0
EXIT_PROBLEMS = 1

#: (column header, resource type as it appears in /status)
TYPE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("CDS", "Cluster"),
    ("EDS", "ClusterLoadAssignment"),
    ("LDS", "Listener"),
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


def _str(value: Any, default: str = "-") -> str:
    return default if value is None or value == "" else str(value)


def _peer(peer: str) -> str:
    """gRPC peer strings look like ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    for prefix in ("ipv4:", "ipv6:"):
        if peer.startswith(prefix):
            return peer[len(prefix) :]
    return peer


def _types(sidecar: Mapping[str, Any]) -> Mapping[str, Any]:
    types = sidecar.get("types")
    return types if isinstance(types, Mapping) else {}


def _list(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = data.get(key)
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def problems(status: Mapping[str, Any]) -> list[str]:
    """Everything wrong in one control plane's ``/status``, one line each."""
    out: list[str] = []
    if not status.get("ready", False):
        out.append(f"control plane not ready: {_str(status.get('reason'), 'no reason given')}")
    for g in _list(status, "groups"):
        if g.get("degraded") or g.get("health") not in ("ok", None):
            out.append(
                f"group {g.get('name')} {g.get('health', 'degraded')}: "
                f"{_str(g.get('reason'), 'no agreement')} "
                f"({g.get('agreeing', 0)}/{g.get('sentinels', 0)} Sentinels agree)"
            )
        drained = {str(d) for d in g.get("drained") or []}
        promotable = [r for r in g.get("replicas") or [] if str(r) not in drained]
        if g.get("primary") and not promotable:
            out.append(
                f"group {g.get('name')} has no promotable replica: if its primary "
                f"{g.get('primary')} fails, Sentinel cannot fail over"
            )
    for s in _list(status, "sentinels"):
        if not s.get("reachable", False):
            out.append(f"sentinel {s.get('address')} unreachable: {_str(s.get('error'), '?')}")
        elif s.get("tilt"):
            out.append(f"sentinel {s.get('address')} in TILT mode (its vote is ignored)")
    for sc in _list(status, "sidecars"):
        node = _str(sc.get("node_id"), f"stream {sc.get('stream_id')}")
        for _, type_name in TYPE_COLUMNS:
            ts = _types(sc).get(type_name)
            if not isinstance(ts, Mapping):
                continue
            state = ts.get("state")
            if state == "NACKED":
                detail = " ".join(str(ts.get("nack_detail", "")).split())
                out.append(
                    f"sidecar {node} NACKED {type_name} version {_str(ts.get('nacked'))}: "
                    f"{detail or 'no detail'}"
                )
            elif state == "STALE":
                out.append(
                    f"sidecar {node} STALE on {type_name}: sent {_str(ts.get('sent'))}, "
                    f"ACKed {_str(ts.get('acked'), 'nothing')}"
                )
    return out


def status_exit_code(statuses: Sequence[Mapping[str, Any] | None]) -> int:
    """1 if any control plane is unreachable (``None``) or has a problem, else 0."""
    for status in statuses:
        if status is None or problems(status):
            return EXIT_PROBLEMS
    return EXIT_OK


def _replicas(group: Mapping[str, Any]) -> str:
    drained = {str(d) for d in group.get("drained") or []}
    replicas = [str(r) for r in group.get("replicas") or []]
    if not replicas:
        return "-"
    return ", ".join(f"{r} (drained)" if r in drained else r for r in replicas)


def render_status(status: Mapping[str, Any], source: str = "") -> str:
    """One control plane's ``/status`` as tables, then its problems."""
    parts: list[str] = []
    ready = "ready" if status.get("ready") else f"NOT READY ({_str(status.get('reason'))})"
    parts.append(f"control plane {source}: {ready}".replace("  ", " "))
    groups = _list(status, "groups")
    parts.append(
        table(
            ["GROUP", "PRIMARY", "REPLICAS", "SENTINELS", "EPOCH", "HEALTH"],
            [
                [
                    _str(g.get("name")),
                    _str(g.get("primary"), "(none)"),
                    _replicas(g),
                    f"{g.get('agreeing', 0)}/{g.get('sentinels', 0)} agree",
                    _str(g.get("config_epoch")),
                    _str(g.get("health"))
                    + (" (provisional)" if g.get("provisional") else "")
                    + (f": {g.get('reason')}" if g.get("degraded") and g.get("reason") else ""),
                ]
                for g in groups
            ],
        )
    )
    sentinels = _list(status, "sentinels")
    if sentinels:
        parts.append(
            table(
                ["SENTINEL", "STATE"],
                [
                    [
                        _str(s.get("address")),
                        ("up (TILT)" if s.get("tilt") else "up")
                        if s.get("reachable")
                        else f"DOWN: {_str(s.get('error'), '?')}",
                    ]
                    for s in sentinels
                ],
            )
        )
    sidecars = _list(status, "sidecars")
    if sidecars:
        rows = []
        for sc in sidecars:
            types = _types(sc)
            routes = sc.get("primaries")
            rows.append(
                [
                    _str(sc.get("node_id"), f"(stream {sc.get('stream_id')})"),
                    _str(sc.get("cluster")),
                    _peer(_str(sc.get("peer"))),
                    _str(sc.get("connected_since")),
                    *[_state(types.get(type_name)) for _, type_name in TYPE_COLUMNS],
                    ", ".join(f"{g}={p}" for g, p in sorted(routes.items()))
                    if isinstance(routes, Mapping) and routes
                    else "-",
                ]
            )
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


def _state(ts: Any) -> str:
    if not isinstance(ts, Mapping):
        return "-"
    state = str(ts.get("state", "-"))
    return "-" if state == "NOT_SENT" else state


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f} ms"


def _when(at: Any) -> str:
    if not isinstance(at, int | float):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def render_events(failovers: Sequence[Mapping[str, Any]]) -> str:
    """Failover timelines (oldest first); durations are from the first Sentinel sign."""
    if not failovers:
        return "no failover recorded since the control plane started"
    rows = []
    for f in failovers:
        acked = f"{f.get('acked', 0)}/{f.get('sidecars', 0)}"
        if f.get("superseded"):
            acked += " (superseded)"
        rows.append(
            [
                _when(f.get("at")),
                _str(f.get("group")),
                f"{_str(f.get('old'))} -> {_str(f.get('new'))}",
                f"{_str(f.get('trigger'))} ({_str(f.get('sign'))})",
                _ms(f.get("detect_to_switch_ms")),
                _ms(f.get("detect_to_push_ms")),
                _ms(f.get("detect_to_acked_ms")),
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
