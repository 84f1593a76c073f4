"""The admin HTTP surface: ``/healthz``, ``/readyz``, ``/status``, ``/events``, ``/metrics``.

Read-only views of the service's state for people, probes and Prometheus,
plus one write that changes no routing: ``POST /notices/drain``, by which
``sentinel-xds drain`` labels the failover it is about to cause (so the
timeline says ``trigger: drain``). Bound to loopback by default; binding
elsewhere is allowed but logged, because ``/status`` tells an attacker where
every Redis primary is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from redis_sentinel_watch import Address, AddressError

__all__ = ["AdminServer", "DrainNotice"]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = structlog.get_logger("xds.admin")

MAX_EVENTS = 100

#: labels the next failover of ``group`` away from ``node``; returns an error or None
DrainNotice = Callable[[str, Address, float], "str | None"]


class AdminServer:
    """Serves JSON produced by callables the service hands in."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], tuple[bool, str]],
        *,
        metrics: Callable[[], bytes] | None = None,
        events: Callable[[int], list[dict[str, Any]]] | None = None,
        drain_notice: DrainNotice | None = None,
        redact: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._status = status
        self._ready = ready
        self._metrics = metrics
        self._events = events
        self._drain_notice = drain_notice
        self._redact = redact
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._redacting] if self._redact else [])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_view)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics_view)
        if self._events is not None:
            app.router.add_get("/events", self._events_view)
        if self._drain_notice is not None:
            app.router.add_post("/notices/drain", self._drain_notice_view)
        return app

    @web.middleware
    async def _redacting(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Every response body passes the secret redactor (xds.secrets): a NACK quoting a
        resource that holds a password must not show it in /status."""
        response = await handler(request)
        if self._redact is not None and isinstance(response, web.Response):
            body = response.body
            if isinstance(body, bytes):
                response.body = self._redact(body)
        return response

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, why = self._ready()
        return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)

    async def _status_view(self, _: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def _metrics_view(self, _: web.Request) -> web.Response:
        assert self._metrics is not None
        # prometheus' content type carries a version parameter aiohttp's content_type rejects
        return web.Response(
            body=self._metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )

    async def _events_view(self, request: web.Request) -> web.Response:
        """``/events?n=N``: the last N failover timelines, oldest first."""
        assert self._events is not None
        raw = request.query.get("n", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVENTS:
            return _bad_request(f"n: expected an integer 1-{MAX_EVENTS}, got {raw!r}")
        return web.json_response({"failovers": self._events(int(raw))})

    async def _drain_notice_view(self, request: web.Request) -> web.Response:
        """``{"group": G, "node": "host:port", "ttl_s": 120}`` → 202, or 400 naming the field."""
        assert self._drain_notice is not None
        try:
            body = await request.json()
        except ValueError:
            return _bad_request("body: expected a JSON object")
        if not isinstance(body, dict):
            return _bad_request("body: expected a JSON object")
        group, node, ttl = body.get("group"), body.get("node"), body.get("ttl_s", 120)
        if not isinstance(group, str) or not group:
            return _bad_request("group: expected a non-empty string")
        if not isinstance(node, str):
            return _bad_request("node: expected 'host:port'")
        try:
            address = Address.parse(node)
        except AddressError as exc:
            return _bad_request(f"node: {exc}")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 600:
            return _bad_request("ttl_s: expected a number of seconds in (0, 600]")
        error = self._drain_notice(group, address, float(ttl))
        if error is not None:
            return _bad_request(error)
        return web.json_response({"ok": True}, status=202)

    async def start(self, listen: Address) -> int:
        if not listen.is_loopback:
            log.warning(
                "admin.not_loopback",
                listen=str(listen),
                hint="/status reveals the Redis topology; restrict access",
            )
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else listen.port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)
