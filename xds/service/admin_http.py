"""The admin HTTP surface: ``/healthz``, ``/readyz``, ``/metrics``, ``/status``, ``/events``.

Views of the service's state for people, probes and Prometheus, plus one
write that changes no routing: ``POST /notices/drain``, by which
``sentinel-xds drain`` labels the failover it is about to cause (so the
timeline says ``trigger: drain``). Who may call what is decided in
:mod:`xds.service.admin_auth`: the read-only surface is anonymous, the
operator surface needs the bearer token when one is configured, and a
non-loopback listener without a token is refused before anything binds (the
config's validation, and :class:`xds.service.app.Service` for a config built
in code: this server binds what it is given).

The listener shares the event loop with the failover path and the xDS
streams, so nothing a client sends may cost much or fail loudly:

- every malformed request is answered 4xx with a one-line JSON ``error``
  (never a 500 with a traceback); a handler bug is still answered 500, but
  logged as ``admin.request_failed`` through structlog (and so through the
  secret redactor), and so are aiohttp's own errors (bad HTTP), via
  :class:`_StructlogBridge` instead of its stderr logger. Text from an
  exception or aiohttp is redacted *before* it is cut to length: a secret
  straddling the cut would otherwise reach the log renderer's redactor as a
  prefix it cannot recognise;
- every response body is redacted once: ``/status`` when its cached body is
  built (not on each of the requests that share it), ``/healthz`` never (a
  fixed body), every other response as it leaves (:meth:`AdminServer._logged`);
- bodies are capped (:data:`MAX_BODY_BYTES`) and must be JSON;
- operator requests are bounded (:data:`MAX_OPERATOR_INFLIGHT` at once; the
  excess gets 503 at once) and the ``/status`` document is built and
  serialized once per event-loop iteration however many requests arrive in
  it, so a flood of ``/status`` cannot starve ``/healthz``; the listen
  backlog (:data:`BACKLOG`) is large enough that a burst of connections is
  queued, not dropped into a SYN retry one second later;
- refusals are logged rate-limited (:class:`~xds.ads.loglimit.LogLimiter`),
  since anonymous clients decide how many there are.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from xds.ads.loglimit import LogLimiter
from xds.service.admin_auth import READ_ONLY_PATHS, Authorizer
from xds.service.admin_documents import EventsDocument, StatusDocument
from xds.service.secrets import REDACTOR
from xds.service.timeline import KEEP

__all__ = ["AdminServer", "DrainNotice"]

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = structlog.get_logger("xds.admin")

MAX_EVENTS = KEEP  # /events?n= can ask for every record the timeline keeps
#: the largest request body aiohttp reads (413 beyond); a drain notice is ~100 bytes
MAX_BODY_BYTES = 64 * 1024
#: seconds a client may take to send a body (408 after)
BODY_TIMEOUT_S = 5.0
#: pending connections the kernel queues (capped by net.core.somaxconn)
BACKLOG = 1024
#: operator requests handled at once; more get 503 (``/healthz`` is never counted)
MAX_OPERATOR_INFLIGHT = 32
#: the longest ``ttl_s`` a notice request may name (the notice itself lives at most
#: :data:`xds.service.notices.MAX_NOTICE_TTL_S`)
MAX_REQUEST_TTL_S = 600

#: the longest exception or aiohttp message text logged (cut after redaction)
MAX_LOGGED_TEXT = 300
#: marks a response whose body is already redacted, or holds nothing to redact
_CLEAN = web.ResponseKey("sentinel_xds.clean", bool)

#: labels the next failover of ``group`` away from ``node``; returns why not, or None
DrainNotice = Callable[[str, Address, float], "str | None"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminServer:
    """Serves JSON produced by callables the service hands in."""

    def __init__(
        self,
        status: Callable[[], StatusDocument],
        ready: Callable[[], tuple[bool, str]],
        *,
        metrics: Callable[[], bytes] | None = None,
        events: Callable[[int], EventsDocument] | None = None,
        drain_notice: DrainNotice | None = None,
        redact: Callable[[bytes], bytes] | None = None,
        token: Secret | None = None,
        max_operator_inflight: int = MAX_OPERATOR_INFLIGHT,
    ) -> None:
        self._status = status
        self._ready = ready
        self._metrics = metrics
        self._events = events
        self._drain_notice = drain_notice
        self._redact = redact
        self._auth = Authorizer(token)
        self._max_inflight = max_operator_inflight
        self._inflight = 0
        self._status_body: bytes | None = None
        self._limiter = LogLimiter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def set_token(self, token: Secret | None) -> None:
        """A rotated operator token (config reload), required from the next request on.
        The caller checks :func:`~xds.service.admin_auth.exposure_error` for the running
        listener first."""
        self._auth = Authorizer(token)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._logged, self._errors, self._guarded],
            client_max_size=MAX_BODY_BYTES,
        )
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

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _logged(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: redact every body not redacted yet (a NACK quoting a password must
        not show it in /status), then log the request at debug level (never its
        headers: the token)."""
        start = time.monotonic()
        response = await handler(request)
        if (
            self._redact is not None
            and isinstance(response, web.Response)
            and not response.get(_CLEAN)
        ):
            body = response.body
            if isinstance(body, bytes):
                response.body = self._redact(body)
        log.debug(
            "admin.request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((time.monotonic() - start) * 1000, 1),
            peer=request.remote,
        )
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every failure becomes a JSON ``{"error": ...}``: aiohttp's own 4xx (404, 405,
        413) keep their status; anything else is a bug, answered 500 and logged."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {
                k: v
                for k, v in exc.headers.items()
                if k.lower() not in ("content-type", "content-length")
            }
            return _error(exc.status, exc.reason.lower(), headers)
        except Exception as exc:
            self._log("error", "admin.request_failed", request, error=_describe(exc))
            return _error(500, "internal error (logged as admin.request_failed)")

    @web.middleware
    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Operator routes: the bearer token (when configured), then the in-flight bound."""
        if request.path in READ_ONLY_PATHS or request.match_info.http_exception is not None:
            return await handler(request)
        refused = self._auth.check(request.headers.get("Authorization"))
        if refused is not None:
            status, why = refused
            self._log("warning", "admin.denied", request, status=status, why=why)
            headers = {"WWW-Authenticate": 'Bearer realm="sentinel-xds"'} if status == 401 else {}
            return _error(status, why, headers)
        if self._inflight >= self._max_inflight:
            self._log("warning", "admin.overloaded", request, limit=self._max_inflight)
            return _error(503, "too many operator requests at once", {"Retry-After": "1"})
        self._inflight += 1
        try:
            return await handler(request)
        finally:
            self._inflight -= 1

    def _log(self, level: str, event: str, request: web.Request, **fields: Any) -> None:
        key = f"{event}:{fields.get('status', '')}:{request.method}:{request.path[:100]}"
        skipped = self._limiter.allow(key)
        if skipped is None:
            return
        getattr(log, level)(
            event,
            method=request.method,
            path=request.path,
            peer=request.remote,
            skipped=skipped,
            **fields,
        )

    # ------------------------------------------------------------------ handlers

    async def _healthz(self, _: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response[_CLEAN] = True  # a fixed body: nothing to redact
        return response

    async def _readyz(self, _: web.Request) -> web.Response:
        ok, why = self._ready()
        return web.json_response({"ready": ok, "reason": why}, status=200 if ok else 503)

    async def _status_view(self, _: web.Request) -> web.Response:
        """The document is built (and redacted) once per loop iteration: a burst of N
        requests costs one build, and each answer is at most one iteration older than
        its request."""
        if self._status_body is None:
            body = json.dumps(self._status().to_json()).encode()
            self._status_body = self._redact(body) if self._redact is not None else body
            asyncio.get_running_loop().call_soon(self._forget_status)
        response = web.Response(body=self._status_body, content_type="application/json")
        response[_CLEAN] = True
        return response

    def _forget_status(self) -> None:
        self._status_body = None

    async def _metrics_view(self, _: web.Request) -> web.Response:
        assert self._metrics is not None
        # prometheus' content type carries a version parameter aiohttp's content_type rejects
        return web.Response(body=self._metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _events_view(self, request: web.Request) -> web.Response:
        """``/events?n=N``: the last N failover timelines, oldest first."""
        assert self._events is not None
        raw = request.query.get("n", "20")
        # isdecimal() alone accepts '²'-like digits int() rejects; the length check
        # keeps int() from ever seeing thousands of digits
        if not (raw.isascii() and raw.isdecimal() and len(raw) <= 3) or not (
            1 <= int(raw) <= MAX_EVENTS
        ):
            return _error(400, f"n: expected an integer 1-{MAX_EVENTS}, got {raw[:20]!r}")
        return web.json_response(self._events(int(raw)).to_json())

    async def _drain_notice_view(self, request: web.Request) -> web.Response:
        """``{"group": G, "node": "host:port", "ttl_s": 60}`` → 202, or 4xx naming the field."""
        assert self._drain_notice is not None
        if request.content_type != "application/json":
            return _error(415, "body: expected Content-Type application/json")
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                raw = await request.read()  # 413 beyond MAX_BODY_BYTES
        except TimeoutError:
            return _error(408, f"body: not received within {BODY_TIMEOUT_S:.0f} s")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: '[[[[…' nested too deep
            body = None
        if not isinstance(body, dict):
            return _error(400, "body: expected a JSON object")
        group, node, ttl = body.get("group"), body.get("node"), body.get("ttl_s", 60)
        if not isinstance(group, str) or not group or len(group) > 200:
            return _error(400, "group: expected a non-empty string")
        if not isinstance(node, str) or len(node) > 300:
            return _error(400, "node: expected 'host:port'")
        try:
            address = Address.parse(node)
        except ValueError as exc:  # AddressError; any other ValueError is bad input too
            return _error(400, f"node: {exc}")
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not 0 < ttl <= MAX_REQUEST_TTL_S
        ):
            return _error(400, f"ttl_s: expected a number of seconds in (0, {MAX_REQUEST_TTL_S}]")
        refused = self._drain_notice(group, address, float(ttl))
        if refused is not None:
            return _error(422, refused)
        return web.json_response({"ok": True}, status=202)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, listen: Address) -> int:
        """Bind ``listen``. Whether ``listen`` may serve without a token was decided
        before (:func:`~xds.service.admin_auth.exposure_error`, by the caller)."""
        runner = web.AppRunner(self.app(), access_log=None, logger=_bridge_logger())
        await runner.setup()
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True, backlog=BACKLOG)
        await site.start()
        self._runner = runner
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else listen.port
        log.info(
            "admin.listening",
            listen=str(listen),
            port=self.port,
            operator_auth="bearer-token" if self._auth.required else "none (loopback only)",
            anonymous=sorted(READ_ONLY_PATHS),
        )
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _clip(text: str) -> str:
    """``text`` redacted, then cut to :data:`MAX_LOGGED_TEXT`: in that order, or a
    secret straddling the cut would leave its prefix for no redactor to recognise."""
    return REDACTOR.text(text)[:MAX_LOGGED_TEXT]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_clip(str(exc))}"


class _StructlogBridge(logging.Handler):
    """aiohttp's server logger → structlog: a malformed HTTP message (which aiohttp
    answers 400 itself) becomes ``admin.bad_http``, anything else ``admin.request_failed``;
    both rate-limited, one line each, never a raw traceback on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._limiter = LogLimiter()

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        client_fault = exc is not None and type(exc).__module__.startswith("aiohttp.http")
        event = "admin.bad_http" if client_fault else "admin.request_failed"
        if record.levelno < logging.WARNING and exc is None:
            return  # aiohttp's debug chatter
        skipped = self._limiter.allow(event)
        if skipped is None:
            return
        fields = {"message": _clip(record.getMessage()), "skipped": skipped}
        if exc is not None:
            fields["error"] = _describe(exc)
        (log.info if client_fault else log.error)(event, **fields)


def _bridge_logger() -> logging.Logger:
    logger = logging.getLogger("xds.admin.aiohttp")
    if not any(isinstance(h, _StructlogBridge) for h in logger.handlers):
        logger.addHandler(_StructlogBridge())
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger
