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
``"ab"`` everywhere would mangle every line; validation refuses such passwords
(see below), so only values from elsewhere can be that short.

Secret files are checked the way ssh checks a private key (:func:`read_secret_file`):
a regular file named directly (no symbolic link, never a FIFO or device, which
would hang or never end), not accessible to group or others, at most
:data:`MAX_SECRET_FILE_BYTES`. So a typo cannot push ``/etc/shadow``'s first line
to every sidecar, and ``/dev/zero`` cannot eat the memory. The config file gets
the same type and size rules (:func:`read_regular_file`), minus the mode.

Why :data:`MIN_PASSWORD_LENGTH` is 8: the redactor replaces every occurrence
of a secret's text. A short value (``info``, ``redis``) occurs by chance in
ordinary lines, which mangles them and, worse, tells a reader of the log where
the password's text stood, i.e. what it is. Eight characters of a real
password practically never occur by chance, so validation refuses shorter
ones and the redactor masks everything validation lets through."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis_sentinel_watch.auth import Credentials, Secret

if TYPE_CHECKING:
    from structlog.typing import Processor

    from xds.service.config import Config

__all__ = [
    "MAX_CONFIG_FILE_BYTES",
    "MAX_SECRET_FILE_BYTES",
    "MIN_PASSWORD_LENGTH",
    "MIN_REDACTED_LENGTH",
    "MIN_TOKEN_LENGTH",
    "REDACTED",
    "REDACTOR",
    "Redactor",
    "Secret",
    "UnresolvedSecret",
    "UnsafeFile",
    "config_secrets",
    "read_regular_file",
    "read_secret_file",
    "too_short",
]

REDACTED = "***"
#: shortest password the config accepts (see the module docstring for why 8)
MIN_PASSWORD_LENGTH = 8
#: the redactor masks every value validation lets through
MIN_REDACTED_LENGTH = MIN_PASSWORD_LENGTH
#: a bearer token is generated, not remembered: ask for more (``openssl rand -hex 16``)
MIN_TOKEN_LENGTH = 16
MAX_SECRET_FILE_BYTES = 4096
MAX_CONFIG_FILE_BYTES = 1024 * 1024


class UnresolvedSecret(Secret):
    """A password the config names but that was deliberately not read
    (``load_config(..., resolve_secrets=False)``, for commands that need only the admin
    address). Using it is a bug, so :meth:`reveal` raises instead of returning ``""``."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("")

    def reveal(self) -> str:
        raise RuntimeError("secret not resolved: load the config with resolve_secrets=True")


class UnsafeFile(Exception):
    """A file was refused; ``str()`` is the reason, without the path (callers name it)."""


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _open_flags(private: bool) -> int:
    """Read-only, non-blocking (a FIFO answers at once), never our controlling terminal
    (O_NOCTTY, for a device named by mistake), no link followed for a secret."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    return flags | os.O_NOFOLLOW if private else flags


def read_regular_file(name: str, cap: int, *, private: bool = False) -> bytes:
    """The bytes of regular file ``name`` (at most ``cap``), or :class:`UnsafeFile`.

    Opened non-blocking so a FIFO returns at once, then judged by ``fstat`` on the
    open descriptor (no check-then-open race). ``private`` is the secret-file rule:
    the last path component may not be a symbolic link and the file may not be
    accessible to group or others.
    """
    try:
        fd = os.open(name, _open_flags(private))
    except OSError as exc:
        if private and exc.errno == errno.ELOOP:
            raise UnsafeFile("it is a symbolic link; name the file itself") from None
        raise UnsafeFile(exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        for test, what in _FILE_TYPES:
            if test(st.st_mode):
                raise UnsafeFile(f"it is {what}, not a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile("it is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            raise UnsafeFile(f"mode {mode:04o} gives group or others access; chmod 600 it")
        if st.st_size > cap:
            raise UnsafeFile(f"it has {st.st_size} bytes, more than the {cap} allowed")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= cap:  # read past the cap by one byte to notice a growing file
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise UnsafeFile(f"it has more than the {cap} bytes allowed")
        return b"".join(chunks)
    except OSError as exc:
        raise UnsafeFile(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)


def read_secret_file(name: str, minimum: int = MIN_PASSWORD_LENGTH) -> Secret:
    """The secret in file ``name`` (one line; the trailing newline is dropped), checked
    by the ssh-like rules of :func:`read_regular_file` and ``minimum`` length."""
    data = read_regular_file(name, MAX_SECRET_FILE_BYTES, private=True)
    try:
        value = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UnsafeFile("it is not valid UTF-8") from None
    if not value:
        raise UnsafeFile("it is empty")
    problem = too_short(value, minimum)
    if problem:
        raise UnsafeFile(problem)
    return Secret(value)


def too_short(value: str, minimum: int = MIN_PASSWORD_LENGTH) -> str | None:
    """Why a secret is too short for the redactor to mask safely, or None."""
    if len(value) < minimum:
        return f"it holds {len(value)} characters; at least {minimum} are required"
    return None


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
            if isinstance(secret, UnresolvedSecret):
                continue  # nothing was read, so nothing can leak
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
    """Every secret value a config holds (Sentinel, Redis, inline sidecar auth, the admin
    token); a sidecar's ``PasswordFile`` holds none, and unresolved ones are skipped."""
    found: list[object] = [config.sentinel_auth, config.redis_auth]
    for group in config.groups:
        found += [group.upstream_auth, group.downstream_auth]
    secrets = [c.password for c in found if isinstance(c, Credentials)]
    if config.admin_token is not None:
        secrets.append(config.admin_token)
    return [s for s in secrets if not isinstance(s, UnresolvedSecret)]
