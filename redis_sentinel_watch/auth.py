"""How to authenticate to, and encrypt traffic with, Sentinels and Redis nodes.

Plain frozen values handed from the config to :class:`.redis_io.RedisSentinelIO`.
Passwords are wrapped in :class:`Secret` so that no ``repr()``, log line or
traceback of a config or client option ever shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Credentials", "Secret", "TlsSettings"]


class Secret:
    """A string that never prints itself. Use :meth:`reveal` where the value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    """``AUTH [username] password``. No username means the ``default`` user
    (``requirepass``); with a username, an ACL user."""

    password: Secret
    username: str | None = None

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"password": self.password.reveal()}
        if self.username:
            options["username"] = self.username
        return options


@dataclass(frozen=True)
class TlsSettings:
    """TLS towards Sentinels and Redis nodes.

    ``ca_file`` verifies the servers' certificates (system CAs when None);
    ``cert_file``/``key_file`` give a client certificate when the servers ask
    for one (``tls-auth-clients yes``). Host names are not checked: Sentinel
    hands out IP addresses, and the watcher connects to them by address.
    ``verify`` false accepts any certificate (testing only).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def client_options(self) -> dict[str, Any]:
        return {
            "ssl": True,
            "ssl_ca_certs": self.ca_file,
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_cert_reqs": "required" if self.verify else "none",
            "ssl_check_hostname": False,
        }
