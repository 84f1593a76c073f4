"""The operator and on-call subcommands: ``status``, ``events``, ``drain``, ``undrain``.

Kept apart from :mod:`xds.ops.cli` (which only wires them in) so the control
plane's own commands and these tools change independently. Where to find
things: ``--config FILE`` (the control plane's config) supplies the Sentinels
and the admin address; ``--sentinel`` / ``--admin`` override it; without
either the admin API is assumed on ``127.0.0.1:9102``, the default.

Exit codes: 0 fine; 1 a problem found or a drain that did not complete; 2 bad
input (usage, config, unknown group or node), always with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from redis_sentinel_watch import Address, AddressError
from redis_sentinel_watch.auth import Secret
from xds.ops.admin_client import AdminClient, AdminError, admin_url
from xds.ops.drain_plan import DEFAULT_COMMAND_TIMEOUT_S, DEFAULT_PAUSE_MS, DEFAULT_PRIORITY
from xds.ops.exits import EXIT_USAGE
from xds.service.admin_documents import StatusDocument
from xds.service.config import DEFAULT_ADMIN_LISTEN, Config, load_config

__all__ = ["OPS_COMMANDS", "add_ops_commands", "address_arg", "run_ops_command"]

OPS_COMMANDS = frozenset({"status", "events", "drain", "undrain"})
MAX_PAUSE_MS = 60_000


class _UsageError(Exception):
    pass


def address_arg(text: str) -> Address:
    """argparse ``type=`` for ``HOST:PORT`` (shared with :mod:`xds.ops.cli`)."""
    try:
        return Address.parse(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _admin(text: str) -> str:
    try:
        return admin_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds in (0, 3600]")
    return value


def _where(p: argparse.ArgumentParser, sentinels: bool) -> None:
    p.add_argument("--config", "-c", help="the control plane's YAML config (Sentinels, admin)")
    p.add_argument(
        "--admin",
        action="append",
        type=_admin,
        metavar="URL",
        help="control-plane admin API (http://host:port); repeat for each replica "
        f"(default: admin.listen from --config, else {DEFAULT_ADMIN_LISTEN})",
    )
    if sentinels:
        p.add_argument(
            "--sentinel",
            action="append",
            type=address_arg,
            metavar="HOST:PORT",
            help="a Sentinel; repeat for each (default: sentinels from --config)",
        )


def add_ops_commands(sub: Any) -> None:
    """Add the four subcommands to ``sub`` (an ``add_subparsers()`` result)."""
    status = sub.add_parser(
        "status",
        help="groups, Sentinels and every sidecar's sync state (exit 1 if anything is wrong)",
    )
    _where(status, sentinels=False)
    status.add_argument("--json", action="store_true", help="print the raw /status JSON")

    events = sub.add_parser("events", help="the last failovers, from first sign to last ACK")
    _where(events, sentinels=False)
    events.add_argument("-n", type=_positive_int, default=10, help="how many (default 10)")
    events.add_argument("--json", action="store_true", help="print JSON")

    drain = sub.add_parser(
        "drain",
        help="take a Redis node out of service (switchover if primary), no write lost",
    )
    undrain = sub.add_parser("undrain", help="let Sentinel promote a drained node again")
    for p in (drain, undrain):
        p.add_argument("group", help="Sentinel master group")
        p.add_argument("node", type=address_arg, metavar="HOST:PORT", help="the Redis node")
        _where(p, sentinels=True)
        p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        p.add_argument(
            "--json",
            action="store_true",
            help="print steps, wait progress and the result (with exit_code) as JSON lines",
        )
    drain.add_argument(
        "--pause-ms",
        type=_positive_int,
        default=DEFAULT_PAUSE_MS,
        help=f"longest time writes may be paused on the primary (default {DEFAULT_PAUSE_MS})",
    )
    drain.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_COMMAND_TIMEOUT_S,
        help="per-request timeout to Redis, Sentinel and admin, seconds "
        f"(default {DEFAULT_COMMAND_TIMEOUT_S:g})",
    )
    undrain.add_argument(
        "--priority",
        type=_positive_int,
        default=DEFAULT_PRIORITY,
        help=f"replica-priority to restore (default {DEFAULT_PRIORITY}, Redis' default)",
    )


def _config(args: argparse.Namespace) -> Config | None:
    if not getattr(args, "config", None):
        return None
    # status and events need only the admin address: read no Redis/Sentinel password
    return load_config(args.config, resolve_secrets=args.command not in ("status", "events"))


def _token(config: Config | None) -> Secret | None:
    """The admin API's bearer token from ``--config`` (``admin.token_file``), if any."""
    from xds.service.admin_auth import admin_token  # noqa: PLC0415

    return admin_token(config) if config is not None else None


def _admins(args: argparse.Namespace, config: Config | None) -> list[str]:
    if args.admin:
        return list(dict.fromkeys(args.admin))
    listen = config.admin_listen if config else DEFAULT_ADMIN_LISTEN
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    return [admin_url(str(Address(host, listen.port)))]


def run_ops_command(args: argparse.Namespace) -> int:
    """Run one of :data:`OPS_COMMANDS`; ConfigError propagates (the caller prints it)."""
    try:
        if args.command == "status":
            return _status(args)
        if args.command == "events":
            return _events(args)
        return _drain(args)
    except _UsageError as exc:
        print(f"sentinel-xds {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _status(args: argparse.Namespace) -> int:
    from xds.ops.status_view import render_status, status_exit_code  # noqa: PLC0415

    statuses: list[StatusDocument | None] = []
    blocks: list[str] = []
    raw: dict[str, Any] = {}
    config = _config(args)
    token = _token(config)
    for base in _admins(args, config):
        try:
            status = AdminClient(base, token=token).status()
        except AdminError as exc:
            statuses.append(None)
            blocks.append(f"control plane {base}: UNREACHABLE ({exc})")
            raw[base] = {"error": str(exc)}
            continue
        statuses.append(status)
        blocks.append(render_status(status, base))
        raw[base] = status.to_json()
    if args.json:
        print(json.dumps(raw if len(raw) > 1 else next(iter(raw.values())), indent=2))
    else:
        print("\n\n".join(blocks))
    return status_exit_code(statuses)


def _events(args: argparse.Namespace) -> int:
    from xds.ops.status_view import render_events  # noqa: PLC0415

    code = 0
    config = _config(args)
    token = _token(config)
    for base in _admins(args, config):
        try:
            failovers = AdminClient(base, token=token).events(args.n)
        except AdminError as exc:
            print(f"control plane {base}: UNREACHABLE ({exc})", file=sys.stderr)
            code = 1
            continue
        if args.json:
            failovers_json = [f.to_json() for f in failovers]
            print(json.dumps({"admin": base, "failovers": failovers_json}, indent=2))
        else:
            print(f"control plane {base}:")
            print(render_events(failovers))
    return code


def _drain(args: argparse.Namespace) -> int:
    from xds.ops.drain import DrainOptions, run_drain, run_undrain  # noqa: PLC0415
    from xds.ops.drain_plan import Budget  # noqa: PLC0415
    from xds.ops.drain_redis import drain_io  # noqa: PLC0415

    config = _config(args)
    sentinels = tuple(args.sentinel or (config.sentinels if config else ()))
    if not sentinels:
        raise _UsageError("no Sentinels: give --sentinel HOST:PORT (repeat) or --config FILE")
    if config is not None and config.group(args.group) is None:
        raise _UsageError(
            f"group {args.group!r} is not in {args.config} "
            f"(groups: {', '.join(g.name for g in config.groups)})"
        )
    timeout = getattr(args, "timeout", DEFAULT_COMMAND_TIMEOUT_S)
    pause_ms = getattr(args, "pause_ms", DEFAULT_PAUSE_MS)
    if pause_ms > MAX_PAUSE_MS:
        raise _UsageError(f"--pause-ms {pause_ms}: at most {MAX_PAUSE_MS}")
    margin = min(max(200, pause_ms // 10), pause_ms // 2)
    options = DrainOptions(
        group=args.group,
        node=args.node,
        sentinels=tuple(dict.fromkeys(sentinels)),
        admins=tuple(_admins(args, config)),
        budget=Budget(pause_ms=pause_ms, margin_ms=margin),
        dry_run=args.dry_run,
        json_lines=args.json,
        command_timeout_s=timeout,
        priority=getattr(args, "priority", DEFAULT_PRIORITY),
        admin_token=_token(config),
        io=drain_io(config),  # serve's sentinel_auth, redis_auth and tls
    )
    result = run_drain(options) if args.command == "drain" else run_undrain(options)
    return result.exit_code
