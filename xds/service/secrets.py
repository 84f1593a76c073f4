"""Keeping secret values out of everything the control plane prints.

Secrets are read from the files or environment variables the config names
(``password_file`` / ``password_env``; see :mod:`xds.service.config`) into
:class:`~redis_sentinel_watch.auth.Secret`, whose ``repr``/``str`` is
``Secret('***')``: that is the first layer, and it covers every value this
code formats itself.

The second layer is here. A secret can still reach output through text we do
not write: Envoy quotes the offending resource in a NACK's ``error_detail``
(and resources carrying ``upstream_auth`` contain the password), a library may
put a connection URL in an exception. So every log line and every admin
response body passes through :data:`REDACTOR`, which replaces each known
secret value (and its JSON-escaped forms) with ``***``. The service registers
the config's secrets at startup.

Values shorter than :data:`MIN_REDACTED_LENGTH` are not redacted: replacing
``"ab"`` everywhere would mangle every line, and such a password protects
nothing anyway (``docs/security.md`` says so).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis_sentinel_watch.auth import Credentials, Secret

if TYPE_CHECKING:
    from structlog.typing import Processor

    from xds.service.config import Config

__all__ = ["MIN_REDACTED_LENGTH", "REDACTED", "REDACTOR", "Redactor", "Secret", "config_secrets"]

REDACTED = "***"
MIN_REDACTED_LENGTH = 4


def _forms(value: str) -> set[str]:
    """The value as written, and as JSON or Prometheus would escape it inside a string."""
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'),
    }


class Redactor:
    """Replaces every registered secret value in text with ``***``."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._text: tuple[str, ...] = ()
        self._bytes: tuple[bytes, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[Secret]) -> None:
        """Register more secrets (idempotent)."""
        forms = set(self._text)
        for secret in secrets:
            value = secret.reveal()
            if len(value) >= MIN_REDACTED_LENGTH:
                forms |= _forms(value)
        # longest first, so a secret containing another is replaced whole
        self._text = tuple(sorted(forms, key=lambda f: (-len(f), f)))
        self._bytes = tuple(f.encode() for f in self._text)

    def __bool__(self) -> bool:
        return bool(self._text)

    def text(self, text: str) -> str:
        for form in self._text:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        for form in self._bytes:
            if form in data:
                data = data.replace(form, REDACTED.encode())
        return data

    def wrap(self, renderer: Processor) -> Processor:
        """A structlog renderer whose output (a str or bytes line) is redacted."""

        def render(logger: Any, method: str, event: Any) -> Any:
            line = renderer(logger, method, event)
            if isinstance(line, str):
                return self.text(line)
            if isinstance(line, bytes):
                return self.data(line)
            return line

        return render


#: process-wide, like the log configuration it guards
REDACTOR = Redactor()


def config_secrets(config: Config) -> list[Secret]:
    """Every secret value a config holds (Sentinel, Redis, and per-group sidecar auth)."""
    found: list[Credentials | None] = [config.sentinel_auth, config.redis_auth]
    for group in config.groups:
        found += [group.upstream_auth, group.downstream_auth]
    return [c.password for c in found if c is not None]
