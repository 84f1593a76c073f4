"""A small client for the control plane's admin API (``status``, ``events``, ``drain``).

Standard library only, synchronous, short timeouts, and never through an
``http_proxy`` from the environment: the admin API is on loopback or a
private network, and an operator tool must not hang or leak ``/status``
(which names every Redis primary) to a proxy.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from redis_sentinel_watch import Address, AddressError
from redis_sentinel_watch.auth import Secret
from xds.service.admin_documents import (
    AdminDocumentError,
    EventsDocument,
    FailoverEvent,
    StatusDocument,
)

__all__ = ["AdminClient", "AdminError", "admin_url"]

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class AdminError(Exception):
    """The admin API could not be reached or answered something unexpected."""


def admin_url(text: str) -> str:
    """``http://host:port``, ``host:port`` or ``:port`` → ``http://host:port`` (no path).

    Raises :class:`ValueError` naming the problem.
    """
    raw = text.strip().rstrip("/")
    if raw.startswith("https://"):
        raise ValueError(f"{text!r}: the admin API speaks plain HTTP (use http://)")
    if raw.startswith("http://"):
        raw = raw[len("http://") :]
    if "/" in raw:
        raise ValueError(f"{text!r}: give only scheme, host and port, no path")
    if raw.startswith(":"):
        raw = "127.0.0.1" + raw
    try:
        address = Address.parse(raw)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc
    return f"http://{address}"


class AdminClient:
    """One control plane's admin API at ``base`` (``http://host:port``, see :func:`admin_url`)."""

    def __init__(self, base: str, timeout_s: float = 2.0, token: Secret | None = None) -> None:
        self.base = admin_url(base)  # http only: checked here, so never file: or others
        self.timeout_s = timeout_s
        self._token = token  # admin.token_file: sent as a bearer token on every request

    def __repr__(self) -> str:
        return f"AdminClient({self.base!r})"

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        request = urllib.request.Request(  # noqa: S310 - base is http://host:port
            self.base + path,
            data=data,
            headers=headers,
            method="POST" if data is not None else "GET",
        )
        try:
            with _opener.open(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            if exc.code == 503 and path == "/readyz":
                payload = detail.encode()
            else:
                raise AdminError(f"{self.base}{path}: HTTP {exc.code} {detail[:200]}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminError(f"{self.base}{path}: cannot connect ({reason})") from exc
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise AdminError(f"{self.base}{path}: not JSON ({exc})") from exc

    def status(self) -> StatusDocument:
        """``/status``; :class:`AdminError` naming the field if it is not what we expect."""
        try:
            return StatusDocument.from_json(self._request("/status"))
        except AdminDocumentError as exc:
            raise AdminError(f"{self.base}/status: {exc}") from exc

    def events(self, n: int) -> tuple[FailoverEvent, ...]:
        """The last ``n`` failovers, oldest first (``/events``)."""
        try:
            return EventsDocument.from_json(self._request(f"/events?n={n}")).failovers
        except AdminDocumentError as exc:
            raise AdminError(f"{self.base}/events: {exc}") from exc

    def notify_drain(self, group: str, node: Address, ttl_s: float) -> None:
        """Tell the control plane the next failover away from ``node`` is a drain."""
        self._request("/notices/drain", {"group": group, "node": str(node), "ttl_s": ttl_s})
