"""The ``sentinel-xds`` command line.

Every user error (bad config, bad argument) is one line on stderr and exit
code 2, never a traceback; the process exits 1 only for runtime failures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from redis_sentinel_watch import Address, AddressError

from .config import ConfigError, load_config

__all__ = ["main"]

EXIT_USAGE = 2


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel-xds",
        description="Watch Redis Sentinel and keep Envoy redis_proxy sidecars on the "
        "current primary over xDS.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the control plane")
    serve.add_argument("--config", "-c", required=True, help="YAML config file")
    serve.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        help="override log.format from the config",
    )

    check = sub.add_parser("check-config", help="validate a config file and print a summary")
    check.add_argument("config", help="YAML config file")

    boot = sub.add_parser("bootstrap", help="print an Envoy sidecar bootstrap (YAML)")
    boot.add_argument("--node-id", required=True, help="unique id of this sidecar")
    boot.add_argument(
        "--node-cluster",
        default="sentinel-xds-sidecar",
        help="node cluster (service name of the application)",
    )
    boot.add_argument(
        "--xds",
        action="append",
        type=_address,
        required=True,
        metavar="HOST:PORT",
        help="control-plane xDS endpoint; repeat for each replica",
    )
    boot.add_argument(
        "--admin",
        type=_address,
        default=Address("127.0.0.1", 9901),
        metavar="HOST:PORT",
        help="Envoy admin listener (default 127.0.0.1:9901)",
    )
    boot.add_argument("--output", "-o", help="write to this file instead of stdout")

    demo = sub.add_parser("demo", help="run a local topology and show a live failover")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the failover, keep everything running until Ctrl-C",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.config, args.log_format)
        if args.command == "check-config":
            return _check(args.config)
        if args.command == "bootstrap":
            return _bootstrap(args)
        if args.command == "demo":
            from .demo import run_demo  # noqa: PLC0415 - pulls in the lab only when asked

            return run_demo(keep_running=args.keep_running)
    except ConfigError as exc:
        print(f"sentinel-xds: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


def _serve(path: str, log_format: str | None) -> int:
    from .logs import configure_logging  # noqa: PLC0415
    from .service import Service  # noqa: PLC0415

    config = load_config(path)
    fmt = log_format or config.log.format
    configure_logging(
        fmt if fmt in ("auto", "json", "console") else "auto",  # type: ignore[arg-type]
        config.log.level,
    )

    async def run() -> None:
        service = Service(config)
        await service.serve_forever()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"sentinel-xds: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _check(path: str) -> int:
    config = load_config(path)
    print(f"config OK: {len(config.sentinels)} Sentinels, {len(config.groups)} group(s)")
    for g in config.groups:
        print(f"  group {g.name}: sidecars listen on {g.listen}")
    print(f"  xDS on {config.xds_listen}, admin on {config.admin_listen}")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from .bootstrap import bootstrap_yaml  # noqa: PLC0415

    try:
        text = bootstrap_yaml(
            args.node_id, args.xds, node_cluster=args.node_cluster, admin=args.admin
        )
    except ValueError as exc:
        print(f"sentinel-xds: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
