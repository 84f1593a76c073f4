"""SIGHUP: read the config file, its secrets and the xDS certificate again; apply all or nothing.

systemd's ``ExecReload=/bin/kill -HUP $MAINPID`` lands here. Rotating a Redis
or Sentinel password, the admin token or the xDS certificate must not need a
restart: a restart drops every sidecar's stream and forgets the failover
timeline. So a reload is *prepared* first, away from the running state
(:func:`prepare_reload`: the file parsed and validated, every secret read,
the certificate and key loaded and matched; then, in :mod:`xds.service.app`,
the groups' new resources built), and only a complete, valid result is
*applied*, by assignments that cannot fail half-way. Any problem, a
:class:`ConfigError` or anything else raised while preparing, leaves the
service exactly as it was, serving the old state, with ``config.reload_failed``
and a one-line error (:func:`reload_failure`), counted in
``sentinel_xds_config_reloads_total{result="failure"}``.

What a reload does with each part of the file:

- **applied**: ``sentinel_auth``, ``redis_auth``, ``tls`` and
  ``watch.sentinel_timeout_s`` (every new connection to a Sentinel or Redis node
  uses them; open ones stay authenticated), the other ``watch.*`` timings,
  ``groups.X.listen/op_timeout_ms/upstream_auth/downstream_auth`` (the groups'
  resources are rebuilt and pushed to the sidecars), ``admin.token_file`` and
  the token in it, and the contents (or paths) of ``xds.tls.cert_file``,
  ``key_file`` and ``client_ca_file`` (new handshakes get them; connected
  sidecars keep their streams).
- **applied by a new watcher** (:attr:`ReloadPlan.rewatch`): adding or removing
  Sentinels or groups. The watcher's majority, Sentinel connections and
  per-group agreement are built for a fixed set, so the service builds a new
  one, seeded with the running one's conclusions (groups that stay keep their
  last good primary), polls it once, and swaps it in; xDS streams stay open.
  A removed group leaves the snapshot (sidecars drop its listener); an added
  one joins it once the Sentinels agree on its primary, the other groups being
  served meanwhile (see :meth:`xds.service.app.Service._stage`).
- **applied to new streams**: ``groups.X.sidecars`` (the node → profile rule is
  rebuilt on every reload). A stream's profile (which groups it receives) is
  chosen when it opens: connected sidecars keep theirs until they reconnect.
- **reported and ignored until a restart** (:data:`RESTART_ONLY`,
  ``config.reload_ignored``): the listen addresses and the limits of the xDS
  listener, and ``log.*``. The sockets are bound and the limits built into the
  running server; a reload that refused them would also block the password
  rotation that came with them, and keeping the old value is always safe.
- **refused** (the reload fails): switching ``xds.tls`` on or off or changing
  ``require_client_cert`` (the transport is fixed when the port is bound, and
  the rule that inline passwords need client certificates was checked against
  the file, not against what runs). These need a restart; replicas restart
  one at a time without sidecars noticing (``docs/runbook.md``).

``password_env`` values come from the process environment, which no reload
can change: rotate those by restart, or use ``password_file``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from redis_sentinel_watch import Address
from xds.service.admin_auth import exposure_error
from xds.service.config import Config, ConfigError, load_config
from xds.service.tls import TlsLoadError, TlsMaterial, load_server_tls

__all__ = [
    "RESTART_ONLY",
    "ReloadPlan",
    "diff_fields",
    "plan_reload",
    "prepare_reload",
    "reload_failure",
]

#: Config attributes a reload keeps from the running config (reported, applied on restart)
RESTART_ONLY = (
    "xds_listen",
    "admin_listen",
    "xds_max_streams",
    "xds_max_streams_per_peer",
    "xds_first_request_timeout_s",
    "xds_max_node_bytes",
    "xds_max_requests_per_second",
    "log",
)


@dataclass(frozen=True)
class ReloadPlan:
    """A validated reload, ready to apply: nothing in it can fail any more.

    ``config`` is the file's config with the :data:`RESTART_ONLY` parts of the
    running one; ``changed`` and ``ignored`` are the file's dotted key names
    (never values); ``tls`` is the certificate material to serve if it changed.
    ``rewatch``: the set of Sentinels or of groups changed (a new watcher is needed).
    """

    config: Config
    changed: tuple[str, ...]
    ignored: tuple[str, ...]
    tls: TlsMaterial | None
    rewatch: bool = False


def _file_name(attribute: str) -> str:
    """``xds_max_streams`` → ``xds.max_streams`` (Config's ``x_y`` is the file's ``x.y``)."""
    if attribute.startswith(("xds_", "admin_")):
        return attribute.replace("_", ".", 1)
    return attribute


def diff_fields(old: object, new: object, path: str) -> list[str]:
    """Dotted names of what differs between two config values (recursing into
    dataclasses of the same type, an address being one value); never the values."""
    if old == new:
        return []
    if (
        dataclasses.is_dataclass(old)
        and not isinstance(old, type | Address)  # an address is one value
        and type(old) is type(new)
    ):
        found: list[str] = []
        for f in dataclasses.fields(old):
            name = _file_name(f.name) if isinstance(old, Config) else f.name
            found += diff_fields(getattr(old, f.name), getattr(new, f.name), f"{path}{name}.")
        return found
    return [path.rstrip(".")]


def _refusal(running: Config, new: Config) -> ConfigError | None:
    """Why ``new`` cannot replace ``running`` without a restart, or None."""
    before, after = running.xds_tls, new.xds_tls
    if (before is None) != (after is None) or (
        before is not None
        and after is not None
        and before.require_client_cert != after.require_client_cert
    ):
        field = "xds.tls" if (before is None) != (after is None) else "xds.tls.require_client_cert"
        return ConfigError(
            field,
            "the xDS transport is fixed when the port is bound; changing it needs a restart; "
            "nothing was changed",
        )
    # the file was validated with its own admin.listen; the one that runs is kept
    refused = exposure_error(running.admin_listen, new.admin_token_file)
    if refused is not None:
        return ConfigError("admin.token_file", f"the running admin listener: {refused}")
    return None


def plan_reload(
    running: Config,
    running_tls: TlsMaterial | None,
    new: Config,
    new_tls: TlsMaterial | None,
) -> ReloadPlan:
    """Decide what replacing ``running`` by ``new`` means (pure; :class:`ConfigError`
    when it is refused). ``*_tls`` are the xDS certificate files' contents."""
    refused = _refusal(running, new)
    if refused is not None:
        raise refused
    keep: dict[str, Any] = {a: getattr(running, a) for a in RESTART_ONLY}
    rewatch = set(running.sentinels) != set(new.sentinels) or {g.name for g in running.groups} != {
        g.name for g in new.groups
    }
    if set(running.sentinels) == set(new.sentinels):  # reordered is not a change
        keep["sentinels"] = running.sentinels
    ignored = tuple(
        name
        for a in RESTART_ONLY
        for name in diff_fields(getattr(running, a), getattr(new, a), f"{_file_name(a)}.")
    )
    effective = dataclasses.replace(new, **keep)
    # groups are compared by name, so a reordered file is not a change
    by_name = {g.name: g for g in effective.groups}
    changed = diff_fields(
        dataclasses.replace(running, groups=()), dataclasses.replace(effective, groups=()), ""
    )
    for g in running.groups:  # a removed or added group is named whole
        now = by_name.get(g.name)
        changed += [f"groups.{g.name}"] if now is None else diff_fields(g, now, f"groups.{g.name}.")
    changed += [f"groups.{g.name}" for g in effective.groups if running.group(g.name) is None]
    tls: TlsMaterial | None = None
    if new_tls is not None and running_tls is not None and new_tls != running_tls:
        tls = new_tls
        changed += [f for f in new_tls.changed_fields(running_tls) if f not in changed]
    return ReloadPlan(effective, tuple(changed), ignored, tls, rewatch)


def prepare_reload(
    path: str | os.PathLike[str], running: Config, running_tls: TlsMaterial | None
) -> ReloadPlan:
    """Read and check everything a reload needs: the file, its secrets, the xDS
    certificate and key. Blocking file I/O (run it off the event loop); raises
    :class:`ConfigError` naming the field."""
    new = load_config(path)
    new_tls: TlsMaterial | None = None
    if new.xds_tls is not None:
        try:
            new_tls = load_server_tls(new.xds_tls)
        except TlsLoadError as exc:
            raise ConfigError(f"xds.tls.{exc.field}", str(exc)) from None
    return plan_reload(running, running_tls, new, new_tls)


def reload_failure(exc: Exception) -> tuple[str, str]:
    """``(field, one-line error)`` for ``config.reload_failed``.

    A :class:`ConfigError` names its field. Anything else raised while a reload
    is prepared (an ``OSError`` from a file replaced mid-reload, resources that
    cannot be built from the new groups) has no field and is named by its type:
    it is still a failed reload, logged and counted, with the old state kept.
    """
    if isinstance(exc, ConfigError):
        return exc.field, str(exc)
    return "", " ".join(f"{type(exc).__name__}: {exc}".split())
