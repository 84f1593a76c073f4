"""TLS and mutual TLS on the xDS listener: the settings, their checks, gRPC credentials.

Why it matters: the xDS stream tells a sidecar where every Redis primary is
and, with ``groups.X.upstream_auth``, carries the Redis password itself
(Envoy's redis_proxy takes it as an inline value). Without TLS anyone on the
path reads it; without *client* certificates anyone who can reach the port can
ask for it. With ``require_client_cert`` only sidecars holding a certificate
signed by ``client_ca_file`` get a stream; everyone else fails the handshake,
before any gRPC method runs.

The files are checked when the config is loaded, with Python's ``ssl`` module
(the same OpenSSL rules gRPC applies), so a wrong key or an empty CA file is a
one-line config error naming the field rather than a server that starts and
refuses every sidecar.

Rotation needs no restart: the server's credentials are *dynamic*
(:class:`RotatingServerCredentials`, over ``grpc.dynamic_ssl_server_credentials``):
gRPC asks them for the current certificate before every new handshake, and a
SIGHUP (:mod:`xds.service.reload`) hands them the files read again. Connected
sidecars keep their streams (an established TLS session is not renegotiated);
each new connection gets the new certificate. The bytes handed to gRPC are
the bytes that were checked (:func:`load_server_tls` reads, checks, reads
again and compares), so a certificate caught half-written by a reload is a
failed reload, never a server that refuses every handshake.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass

import grpc

from redis_sentinel_watch import Address
from xds.service.secrets import MAX_CONFIG_FILE_BYTES, UnsafeFile, read_regular_file

__all__ = [
    "RotatingServerCredentials",
    "ServerTls",
    "TlsLoadError",
    "TlsMaterial",
    "TlsProblem",
    "check_server_tls",
    "load_server_tls",
    "server_credentials",
    "transport_warning",
]


@dataclass(frozen=True)
class ServerTls:
    """``xds.tls``: the server's certificate chain and key, and who may connect.

    ``client_ca_file`` with ``require_client_cert`` is mutual TLS: a client
    must present a certificate that chains to that CA. gRPC cannot "ask but
    not require" with verification, so the config accepts the CA only
    together with the requirement.
    """

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    require_client_cert: bool = False

    @property
    def mode(self) -> str:
        """``mtls`` or ``tls`` (for logs and ``/status``)."""
        return "mtls" if self.require_client_cert else "tls"


@dataclass(frozen=True)
class TlsProblem:
    """What is wrong with one file of ``xds.tls`` (``field`` is the key, e.g. ``key_file``)."""

    field: str
    message: str


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.args[-1]).lower().replace("_", " ")


def _unreadable(path: str, exc: OSError) -> str:
    return f"cannot read {path!r}: {exc.strerror or exc}"


def check_server_tls(tls: ServerTls) -> TlsProblem | None:
    """Load every file the way the server will; the first problem found, or None.

    ``ssl`` opens the files itself, so a file removed or replaced since it was
    read (a certificate rotated while a reload reads it) is an ``OSError`` here:
    a problem naming the key too, never an exception out of a reload.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_verify_locations(cafile=tls.cert_file)
    except ssl.SSLError as exc:
        return TlsProblem(
            "cert_file", f"{tls.cert_file!r} holds no PEM certificate ({_reason(exc)})"
        )
    except OSError as exc:
        return TlsProblem("cert_file", _unreadable(tls.cert_file, exc))
    try:
        # a callable password makes an encrypted key fail instead of prompting on the tty
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        if "mismatch" in str(exc).lower():
            return TlsProblem(
                "key_file",
                f"{tls.key_file!r} is not the private key of cert_file {tls.cert_file!r}",
            )
        return TlsProblem(
            "key_file",
            f"{tls.key_file!r} is not an unencrypted PEM private key ({_reason(exc)})",
        )
    except OSError as exc:  # either file: name the one that is gone
        gone = "key_file" if os.path.exists(tls.cert_file) else "cert_file"
        return TlsProblem(gone, _unreadable(getattr(tls, gone), exc))
    if tls.client_ca_file is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as exc:
            return TlsProblem(
                "client_ca_file",
                f"{tls.client_ca_file!r} holds no PEM CA certificate ({_reason(exc)})",
            )
        except OSError as exc:
            return TlsProblem("client_ca_file", _unreadable(tls.client_ca_file, exc))
    return None


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes of ``xds.tls`` as read and checked (compared to see what a reload changes)."""

    key: bytes
    chain: bytes
    client_ca: bytes | None

    def certificate_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.client_ca
        )

    def changed_fields(self, other: TlsMaterial) -> list[str]:
        """The ``xds.tls`` keys whose file contents differ from ``other``'s."""
        pairs = (
            ("cert_file", self.chain, other.chain),
            ("key_file", self.key, other.key),
            ("client_ca_file", self.client_ca, other.client_ca),
        )
        return [f"xds.tls.{name}" for name, mine, theirs in pairs if mine != theirs]


class TlsLoadError(Exception):
    """A file of ``xds.tls`` cannot be used; ``field`` is its key (e.g. ``key_file``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _read_all(tls: ServerTls) -> TlsMaterial:
    files = (
        ("key_file", tls.key_file),
        ("cert_file", tls.cert_file),
        ("client_ca_file", tls.client_ca_file),
    )
    found: dict[str, bytes] = {}
    for field, name in files:
        if name is None:
            continue
        try:
            found[field] = read_regular_file(name, MAX_CONFIG_FILE_BYTES)
        except UnsafeFile as exc:
            raise TlsLoadError(field, f"cannot read {name!r}: {exc}") from None
    return TlsMaterial(found["key_file"], found["cert_file"], found.get("client_ca_file"))


def load_server_tls(tls: ServerTls) -> TlsMaterial:
    """Read the files, check them (:func:`check_server_tls`), read them again: the
    checked bytes, or :class:`TlsLoadError` naming the key (also when a file changed
    in between, e.g. a certificate written while its key was not yet)."""
    before = _read_all(tls)
    problem = check_server_tls(tls)
    if problem is not None:
        raise TlsLoadError(problem.field, problem.message)
    after = _read_all(tls)
    if after != before:
        changed = after.changed_fields(before)[0].rpartition(".")[2]
        raise TlsLoadError(changed, "changed while it was being read; reload again")
    return after


class RotatingServerCredentials:
    """gRPC server credentials whose certificate can be replaced while the server runs.

    gRPC calls the fetcher (from its own threads) before each new handshake;
    it answers None ("no change") until :meth:`rotate` hands it new material,
    which it then returns once. Whether client certificates are required is
    fixed for the server's lifetime (a reload may not change it).
    """

    def __init__(self, tls: ServerTls, material: TlsMaterial) -> None:
        self.require_client_cert = tls.require_client_cert
        self.material = material
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._lock = threading.Lock()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            material.certificate_configuration(),
            self._fetch,  # type: ignore[arg-type]  # None means "no change" (grpc's docs)
            require_client_authentication=tls.require_client_cert,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def rotate(self, material: TlsMaterial) -> None:
        """Serve ``material`` from the next handshake on (existing connections keep theirs)."""
        with self._lock:
            self.material = material
            self._pending = material.certificate_configuration()


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """Static gRPC server credentials from the files, read now (tests and tools)."""
    material = _read_all(tls)
    return grpc.ssl_server_credentials(
        [(material.key, material.chain)],
        root_certificates=material.client_ca,
        require_client_auth=tls.require_client_cert,
    )


def transport_warning(listen: Address, tls: ServerTls | None) -> str | None:
    """Why this xDS listener is less protected than it should be, or None.

    Logged once at startup (``xds.transport.unprotected``): a plaintext
    listener off loopback shows the topology to the network. Passwords in
    resources without mutual TLS need no warning: the config refuses them
    (``groups.X.upstream_auth``/``downstream_auth`` inline need
    ``xds.tls.require_client_cert``), so a running service never has them.
    """
    if tls is None and not listen.is_loopback:
        return (
            "xds.listen is not loopback and xds.tls is not set: streams are plaintext and "
            "any client that reaches it learns where every Redis primary is"
        )
    return None
