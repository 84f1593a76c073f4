"""The ``sentinel-xds`` command line.

Every user error (bad config, bad argument) is one line on stderr and exit
code 2, never a traceback; the process exits 1 only for runtime failures.
Each command's ``--help`` ends with its exit codes (:data:`EXIT_CODES`), so a
runbook or a puppet ``validate_cmd`` can rely on them without reading code.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from redis_sentinel_watch import Address
from xds.ops.commands import OPS_COMMANDS, add_ops_commands, address_arg, run_ops_command
from xds.ops.exits import EXIT_USAGE
from xds.service.config import ConfigError, load_config
from xds.service.version import package_version

__all__ = ["main"]


#: what each command's exit code means, shown at the end of its ``--help``
EXIT_CODES: dict[str, str] = {
    "serve": "0 clean shutdown (SIGTERM/SIGINT); 1 runtime failure (cannot bind, the "
    "Sentinel watch died); 2 bad config or arguments",
    "check-config": "0 the config is valid; 2 it is not (one line naming the field)",
    "check-client-config": "0 fine; 1 findings printed; 2 a file cannot be read",
    "bootstrap": "0 bootstrap written; 2 bad arguments",
    "demo": "0 the failover was followed; 1 it was not, or a component failed to start; "
    "130 interrupted",
    "status": "0 every group healthy and every sidecar synced; 1 a problem shown; "
    "2 bad input or the admin API cannot be reached",
    "events": "0 events printed; 2 bad input or the admin API cannot be reached",
    "drain": "0 drained and every sidecar ACKed; 1 refused or not completed (nothing "
    "half-applied is left: the reason says what state the node is in); 2 bad input",
    "undrain": "0 the node is promotable again; 1 refused or failed; 2 bad input",
    "completion": "0 script printed; 2 unknown shell",
}


def _group_listen(text: str) -> tuple[str, Address]:
    group, sep, addr = text.partition("=")
    if not sep or not group:
        raise argparse.ArgumentTypeError(f"expected GROUP=HOST:PORT, got {text!r}")
    return group, address_arg(addr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentinel-xds",
        description="Watch Redis Sentinel and keep Envoy redis_proxy sidecars on the "
        "current primary over xDS.",
    )
    parser.add_argument(
        "--version", action="version", version=f"sentinel-xds {package_version()}"
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

    client = sub.add_parser(
        "check-client-config",
        help="check a docker-registry config for use behind the sidecar",
        description="Report, one line each, what is wrong with a docker-registry config "
        "for use behind the sidecar: redis.addr not at a sidecar listener, db other than 0, "
        "a password the sidecar does not expect, health.tcp aimed at a Redis node or missing. "
        "Exit 0 when fine, 1 with findings, 2 when a file cannot be read. "
        "REGISTRY_* environment overrides are not considered.",
    )
    client.add_argument("file", help="docker-registry config (config.yml)")
    client.add_argument(
        "--config",
        "-c",
        metavar="CONTROL_PLANE_CONFIG",
        help="sentinel-xds config, to check redis.addr against the sidecar listeners",
    )
    client.add_argument(
        "--bootstrap",
        metavar="SIDECAR_BOOTSTRAP",
        help="this host's sidecar bootstrap, for its --listen overrides (needs --config)",
    )

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
        type=address_arg,
        required=True,
        metavar="HOST:PORT",
        help="control-plane xDS endpoint; repeat for each replica",
    )
    boot.add_argument(
        "--admin",
        type=address_arg,
        default=Address("127.0.0.1", 9901),
        metavar="HOST:PORT",
        help="Envoy admin listener (default 127.0.0.1:9901)",
    )
    boot.add_argument(
        "--ads",
        choices=["sotw", "delta"],
        default="sotw",
        help="ADS variant: State of the World (default) or Delta (incremental)",
    )
    boot.add_argument(
        "--listen",
        action="append",
        type=_group_listen,
        default=[],
        metavar="GROUP=HOST:PORT",
        help="this sidecar listens for GROUP here instead of the config's groups.GROUP.listen "
        "(e.g. two sidecars on one host); repeatable",
    )
    boot.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="TLS to the control plane: CA that signed its certificate (path on the sidecar host)",
    )
    boot.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="this sidecar's client certificate for mutual TLS (with --tls-key)",
    )
    boot.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert")
    boot.add_argument(
        "--tls-sni",
        metavar="NAME",
        help="server name to send and to require in the control plane's certificate (DNS SAN)",
    )
    boot.add_argument(
        "--stats-listen",
        type=address_arg,
        metavar="HOST:PORT",
        help="also serve Envoy's /stats/prometheus here, and nothing else of the admin API "
        "(for Prometheus; the admin stays on --admin)",
    )
    boot.add_argument("--output", "-o", help="write to this file instead of stdout")

    demo = sub.add_parser("demo", help="run a local topology and show a live failover")
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the failover, keep everything running until Ctrl-C",
    )
    add_ops_commands(sub)
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script, e.g. "
        "`sentinel-xds completion bash > /etc/bash_completion.d/sentinel-xds` "
        "(the Debian package installs it).",
    )
    completion.add_argument("shell", choices=["bash", "zsh"], help="target shell")
    for name, choice in sub.choices.items():
        choice.formatter_class = argparse.RawDescriptionHelpFormatter
        choice.epilog = f"exit codes: {EXIT_CODES[name]}"
    return parser


def completion_script(shell: str) -> str:
    """A static completion script generated from the parser (no Python runs on TAB)."""
    import shtab  # noqa: PLC0415 - only this command needs it

    return str(shtab.complete(_parser(), shell=shell))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.config, args.log_format)
        if args.command in OPS_COMMANDS:
            return run_ops_command(args)
        if args.command == "check-config":
            return _check(args.config)
        if args.command == "check-client-config":
            return _check_client(args.file, args.config, args.bootstrap)
        if args.command == "bootstrap":
            return _bootstrap(args)
        if args.command == "completion":
            sys.stdout.write(completion_script(args.shell))
            return 0
        if args.command == "demo":
            from xds.lab.demo import run_demo  # noqa: PLC0415 - pulls in the lab only when asked

            return run_demo(keep_running=args.keep_running)
    except ConfigError as exc:
        print(f"sentinel-xds: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE


def _serve(path: str, log_format: str | None) -> int:
    from xds.service.app import Service  # noqa: PLC0415
    from xds.service.logs import configure_logging  # noqa: PLC0415

    config = load_config(path)
    fmt = log_format or config.log.format
    configure_logging(
        fmt if fmt in ("auto", "json", "console") else "auto",  # type: ignore[arg-type]
        config.log.level,
    )

    async def run() -> int:
        service = Service(config, config_path=path)  # SIGHUP reloads it
        await service.serve_forever()
        return service.exit_code

    try:
        return asyncio.run(run())
    except OSError as exc:
        print(f"sentinel-xds: cannot start: {exc}", file=sys.stderr)
        return 1


def _check(path: str) -> int:
    config = load_config(path)
    print(f"config OK: {len(config.sentinels)} Sentinels, {len(config.groups)} group(s)")
    for g in config.groups:
        pairs = (("upstream AUTH", g.upstream_auth), ("client AUTH", g.downstream_auth))
        auth = [  # user names only: the echo never shows a password
            f"{what} as {creds.username or 'default user'}"
            for what, creds in pairs
            if creds is not None
        ]
        print(f"  group {g.name}: sidecars listen on {g.listen}" + "".join(f", {a}" for a in auth))
    transport = config.xds_tls.mode if config.xds_tls is not None else "plaintext"
    print(f"  xDS on {config.xds_listen} ({transport}), admin on {config.admin_listen}")
    return 0


def _check_client(path: str, config_path: str | None, bootstrap_path: str | None) -> int:
    from xds.ops.registry_check import (  # noqa: PLC0415
        ClientConfigError,
        bootstrap_listen_overrides,
        check_registry_config,
        listeners_from_config,
        load_registry_config,
        load_yaml_mapping,
    )

    if bootstrap_path and not config_path:
        print("sentinel-xds: --bootstrap needs --config (the groups it overrides)", file=sys.stderr)
        return EXIT_USAGE
    listeners = None
    if config_path:
        config = load_config(config_path)
        overrides: dict[str, Address] = {}
        try:
            if bootstrap_path:
                boot = load_yaml_mapping(bootstrap_path, "an Envoy bootstrap")
                overrides = bootstrap_listen_overrides(boot)
            listeners = listeners_from_config(config, overrides)
        except ClientConfigError as exc:
            print(f"sentinel-xds: {bootstrap_path}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        findings = check_registry_config(load_registry_config(path), listeners)
    except ClientConfigError as exc:
        print(f"sentinel-xds: {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for finding in findings:
        print(f"{path}: {finding}")
    if findings:
        return 1
    print(f"{path}: OK for use behind the sidecar")
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from xds.resources.bootstrap import XdsClientTls, bootstrap_yaml  # noqa: PLC0415

    listen: dict[str, Address] = {}
    for group, addr in args.listen:
        if group in listen:
            print(f"sentinel-xds: --listen: group {group!r} given twice", file=sys.stderr)
            return EXIT_USAGE
        listen[group] = addr
    tls_flags = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key, "--tls-sni": args.tls_sni}
    try:
        tls = None
        if args.tls_ca is not None:
            tls = XdsClientTls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_sni)
        else:
            given = [flag for flag, value in tls_flags.items() if value is not None]
            if given:
                raise ValueError(f"{given[0]} needs --tls-ca (the CA of the control plane)")
        text = bootstrap_yaml(
            args.node_id,
            args.xds,
            node_cluster=args.node_cluster,
            admin=args.admin,
            ads=args.ads,
            listen=listen,
            tls=tls,
            stats_listen=args.stats_listen,
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
