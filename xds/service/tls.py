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
refuses every sidecar. They are read again when the server starts, so a
rotated certificate takes effect on the next restart (replicas restart one
at a time without sidecars noticing; see ``docs/security.md``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from redis_sentinel_watch import Address

__all__ = [
    "ServerTls",
    "TlsProblem",
    "check_server_tls",
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


def check_server_tls(tls: ServerTls) -> TlsProblem | None:
    """Load every file the way the server will; the first problem found, or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_verify_locations(cafile=tls.cert_file)
    except ssl.SSLError as exc:
        return TlsProblem(
            "cert_file", f"{tls.cert_file!r} holds no PEM certificate ({_reason(exc)})"
        )
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
    if tls.client_ca_file is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=tls.client_ca_file)
        except ssl.SSLError as exc:
            return TlsProblem(
                "client_ca_file",
                f"{tls.client_ca_file!r} holds no PEM CA certificate ({_reason(exc)})",
            )
    return None


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """gRPC server credentials from the files, read now (so a restart picks up rotation)."""
    key = Path(tls.key_file).read_bytes()
    chain = Path(tls.cert_file).read_bytes()
    ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=ca,
        require_client_auth=tls.require_client_cert,
    )


def transport_warning(listen: Address, tls: ServerTls | None, carries_secrets: bool) -> str | None:
    """Why this xDS listener is less protected than it should be, or None.

    Logged once at startup (``xds.transport.unprotected``): passwords in
    resources need mutual TLS (anyone who can open a stream is sent them), and
    a plaintext listener off loopback shows the topology to the network.
    """
    if tls is not None and tls.require_client_cert:
        return None
    if carries_secrets:
        return (
            "groups set upstream_auth/downstream_auth, so resources carry Redis passwords; "
            "without xds.tls.require_client_cert any client that reaches xds.listen is sent them"
        )
    if tls is None and not listen.is_loopback:
        return (
            "xds.listen is not loopback and xds.tls is not set: streams are plaintext and "
            "any client that reaches it learns where every Redis primary is"
        )
    return None
