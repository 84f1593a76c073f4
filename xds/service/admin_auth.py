"""Who may use which part of the admin API: the anonymous read-only surface and the operator one.

Two surfaces share the admin listener:

- **read-only** (``/healthz``, ``/readyz``, ``/metrics``): what liveness probes and a
  Prometheus scraper need; always anonymous;
- **operator** (``/status``, ``/events`` and every write, e.g. ``POST /notices/drain``):
  ``/status`` names every Redis primary, replica, Sentinel and sidecar, and a
  drain notice decides whether a failover counts as planned. With a token
  configured (``admin.token_file``), every operator request must carry
  ``Authorization: Bearer <token>``, on loopback too; without one the admin API
  must listen on loopback only: :func:`exposure_error` is that rule, and the
  config's validation, a reload and the service's startup all ask it.

A bearer token read from a file was chosen over mutual TLS (certificates to
issue to every operator's curl and to the scraper) and a Unix socket (no
remote scrape of ``/metrics``): one ``0600`` file, read by the service and by
``sentinel-xds status/events/drain --config``, and usable from ``curl -H``.
The comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from xds.service.config_schema import ConfigError
from xds.service.secrets import MIN_TOKEN_LENGTH, UnresolvedSecret, UnsafeFile, read_secret_file

if TYPE_CHECKING:
    from xds.service.config import Config

__all__ = [
    "READ_ONLY_PATHS",
    "TOKEN_FIELD",
    "Authorizer",
    "admin_token",
    "exposure_error",
    "read_token_file",
]

TOKEN_FIELD = "admin.token_file"  # noqa: S105 - a config key, not a secret
#: anonymous on every listener: probes and scrapers
READ_ONLY_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def read_token_file(path: str, field: str = TOKEN_FIELD) -> Secret:
    """The token in ``path``, read by the secret-file rules of
    :func:`xds.service.secrets.read_secret_file` (regular file, mode 0600 or stricter,
    at most 4 KiB), at least :data:`MIN_TOKEN_LENGTH` printable characters without
    spaces. Raises :class:`ConfigError` naming ``field`` and the path."""
    try:
        token = read_secret_file(path, MIN_TOKEN_LENGTH)
    except UnsafeFile as exc:
        raise ConfigError(field, f"{path!r} {exc}") from None
    value = token.reveal()
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ConfigError(
            field,
            f"{path!r}: expected one token of printable ASCII without spaces "
            "(e.g. openssl rand -hex 32)",
        )
    return token


def admin_token(config: Config) -> Secret | None:
    """The operator token the config holds (None without ``admin.token_file``).

    ``Config.admin_token`` when the config resolved it, else the file
    ``Config.admin_token_file`` read here: ``status`` and ``events`` load the
    config without resolving secrets, yet need the token to call ``/status``.
    """
    token = config.admin_token
    if token is not None and not isinstance(token, UnresolvedSecret):
        return token
    if config.admin_token_file is not None:
        return read_token_file(config.admin_token_file)
    return None


def exposure_error(listen: Address, token: Secret | str | None) -> str | None:
    """Why the admin API may not listen on ``listen`` (None when it may): the one
    "no token beyond loopback" rule.

    Beyond loopback, ``/status`` and the drain notices would answer anyone on
    the network, so a token is required there. ``token`` is the operator token,
    or the path of ``admin.token_file`` where only that is known yet (config
    validation); None when there is none.
    """
    if token is None and not listen.is_loopback:
        return (
            f"{listen} is not loopback: set admin.token_file so that /status, /events and "
            "writes require a bearer token"
        )
    return None


class Authorizer:
    """Decides operator requests: None when allowed, else (HTTP status, reason)."""

    def __init__(self, token: Secret | None) -> None:
        self._expected = b"bearer " + token.reveal().encode() if token is not None else None

    @property
    def required(self) -> bool:
        return self._expected is not None

    def check(self, authorization: str | None) -> tuple[int, str] | None:
        if self._expected is None:
            return None  # loopback only (checked at startup)
        if not authorization:
            return 401, "missing bearer token"
        scheme, _, rest = authorization.strip().partition(" ")
        given = (
            scheme.lower().encode("ascii", "replace")
            + b" "
            + rest.strip().encode("utf-8", "replace")
        )
        if not hmac.compare_digest(given, self._expected):
            return 403, "wrong bearer token"
        return None
