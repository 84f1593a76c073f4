"""The admin HTTP surface: ``/healthz``, ``/readyz`` and ``/status``.

Read-only views of the service's state for people and probes. Bound to
loopback by default; binding elsewhere is allowed but logged, because
``/status`` tells an attacker where every Redis primary is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from redis_sentinel_watch import Address

__all__ = ["AdminServer"]

log = structlog.get_logger("xds.admin")


class AdminServer:
    """Serves JSON produced by callables the service hands in."""

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self._status = status
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_view)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, why = self._ready()
        return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)

    async def _status_view(self, _: web.Request) -> web.Response:
        return web.json_response(self._status())

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
