"""The real aiohttp admin server on 127.0.0.1:0: who may call what, and hostile input.

Everything here binds loopback only. "Anonymous requests from the network are
refused" is tested as the rule that makes it so: with a token configured,
the operator surface refuses every request without it, on loopback too
(the "non-loopback needs a token" rule is in tests/unit/test_admin_auth.py; the
service applies it before anything binds: tests/component/test_admin_service.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import structlog

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Secret
from tests.unit.test_status_view import HEALTHY
from xds.service.admin_documents import EventsDocument, StatusDocument
from xds.service.admin_http import MAX_LOGGED_TEXT, AdminServer, _StructlogBridge
from xds.service.notices import DrainNotices
from xds.service.secrets import REDACTOR

TOKEN = "s3cr3t-admin-token-7f1c2a9e4b"  # noqa: S105 - a test token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PRIMARY = Address("127.0.0.1", 6380)
REPLICA = Address("127.0.0.1", 6381)


def status_json(sidecars: int = 3) -> dict[str, Any]:
    """The status view tests' healthy /status body, with ``sidecars`` synced sidecars."""
    document = copy.deepcopy(HEALTHY)
    (one,) = document["sidecars"]
    document["sidecars"] = [
        {**copy.deepcopy(one), "stream_id": i, "node_id": f"registry-{i}"} for i in range(sidecars)
    ]
    return document


@dataclass
class Admin:
    server: AdminServer
    notices: DrainNotices
    url: str
    port: int


def make_admin(token: str | None = TOKEN, sidecars: int = 3, **kw: Any) -> Admin:
    notices = DrainNotices()
    document = StatusDocument.from_json(status_json(sidecars))

    def notice(group: str, node: Address, ttl_s: float) -> str | None:
        if group != "g":
            return f"group: unknown group {group!r}"
        return notices.note(group, node, ttl_s, (PRIMARY, REPLICA))

    server = AdminServer(
        lambda: document,
        lambda: (True, "ok"),
        metrics=b"sentinel_xds_ready 1\n".__bytes__,
        events=lambda n: EventsDocument(()),
        drain_notice=notice,
        token=Secret(token) if token else None,
        **kw,
    )
    return Admin(server, notices, "", 0)


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    a = make_admin()
    a.port = await a.server.start(Address("127.0.0.1", 0))
    a.url = f"http://127.0.0.1:{a.port}"
    yield a
    await a.server.stop()


async def request(
    admin: Admin,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, admin.url + path, headers=headers, data=data) as resp,
    ):
        body = await resp.read()
        is_json = resp.content_type == "application/json"
        return resp.status, (await resp.json() if is_json and body else body)


NOTICE = b'{"group": "g", "node": "127.0.0.1:6380", "ttl_s": 30}'


def notice_for(node: str) -> bytes:
    return json.dumps({"group": "g", "node": node, "ttl_s": 30}, ensure_ascii=False).encode()


JSON = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- surfaces


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_read_only_surface_answers_anonymously(admin: Admin, path: str) -> None:
    status, _ = await request(admin, "GET", path)
    assert status == 200


@pytest.mark.parametrize("path", ["/status", "/events?n=5"])
async def test_operator_reads_need_the_token(admin: Admin, path: str) -> None:
    """401 without a token (with a WWW-Authenticate challenge), 403 with a wrong one,
    200 with the right one; the refusals reveal nothing of the topology."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(admin.url + path) as resp,
    ):
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert str(PRIMARY) not in await resp.text()
    status, body = await request(admin, "GET", path, headers={"Authorization": "Bearer nope"})
    assert status == 403 and str(PRIMARY) not in str(body)
    status, body = await request(admin, "GET", path, headers=AUTH)
    assert status == 200 and isinstance(body, dict)


async def test_anonymous_drain_notice_is_refused_and_changes_nothing(admin: Admin) -> None:
    with structlog.testing.capture_logs() as logs:
        assert (await request(admin, "POST", "/notices/drain", headers=JSON, data=NOTICE))[0] == 401
        wrong = {**JSON, "Authorization": f"Bearer {TOKEN[:-1]}"}
        assert (await request(admin, "POST", "/notices/drain", headers=wrong, data=NOTICE))[
            0
        ] == 403
    assert len(admin.notices) == 0
    denied = [e for e in logs if e["event"] == "admin.denied"]
    assert [e["status"] for e in denied] == [401, 403]
    assert all(TOKEN[:-1] not in str(e) for e in logs)  # the token is never logged
    status, _ = await request(
        admin, "POST", "/notices/drain", headers={**JSON, **AUTH}, data=NOTICE
    )
    assert status == 202 and len(admin.notices) == 1


async def test_notice_for_unknown_node_or_group_is_refused_4xx(admin: Admin) -> None:
    headers = {**JSON, **AUTH}
    for body, expected in (
        (b'{"group": "g", "node": "127.0.0.1:9999"}', "is not the primary or a known replica"),
        (b'{"group": "nope", "node": "127.0.0.1:6380"}', "unknown group"),
    ):
        status, answer = await request(admin, "POST", "/notices/drain", headers=headers, data=body)
        assert status == 422 and expected in answer["error"]
    assert len(admin.notices) == 0


async def test_without_token_loopback_operator_surface_is_open() -> None:
    """Loopback only (enforced at startup): the pre-token behaviour stays for local use."""
    a = make_admin(token=None)
    a.port = await a.server.start(Address("127.0.0.1", 0))
    a.url = f"http://127.0.0.1:{a.port}"
    try:
        assert (await request(a, "GET", "/status"))[0] == 200
    finally:
        await a.server.stop()


# --------------------------------------------------------------------------- hostile input


MALFORMED: list[tuple[str, str, dict[str, str], bytes | None, int]] = [
    ("GET", "/events?n=\u00b2", AUTH, None, 400),
    ("GET", "/events?n=" + "9" * 5000, AUTH, None, 400),
    ("GET", "/events?n=", AUTH, None, 400),
    ("GET", "/events?n=0", AUTH, None, 400),
    ("GET", "/events?n=101", AUTH, None, 400),
    ("GET", "/events?n=-1", AUTH, None, 400),
    ("GET", "/events?n=1e3", AUTH, None, 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"[" * 100_000, 413),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"[" * 60_000, 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"{" * 60_000, 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"x" * 1_000_000, 413),
    ("POST", "/notices/drain", {"Content-Type": "text/plain", **AUTH}, NOTICE, 415),
    ("POST", "/notices/drain", AUTH, NOTICE, 415),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"", 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"\xff\xfe", 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b"[1, 2]", 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b'{"group": 1, "node": "a:1"}', 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b'{"group": "g", "node": "nonsense"}', 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, b'{"group": "g", "node": ["a"]}', 400),
    # str.isdigit() accepts both; int() raises on the first, reads the second as 33
    ("POST", "/notices/drain", {**JSON, **AUTH}, notice_for("127.0.0.1:\u00b2"), 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, notice_for("127.0.0.1:\u0663\u0663"), 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, NOTICE.replace(b"30", b"true"), 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, NOTICE.replace(b"30", b"1e999"), 400),
    ("POST", "/notices/drain", {**JSON, **AUTH}, NOTICE.replace(b"30", b"NaN"), 400),
    ("GET", "/nope", {}, None, 404),
    ("GET", "/status/../status", {}, None, 401),
    ("DELETE", "/status", AUTH, None, 405),
    ("POST", "/healthz", {}, None, 405),
    ("GET", "/notices/drain", AUTH, None, 405),
    ("PATCH", "/notices/drain", AUTH, None, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    MALFORMED,
    ids=[f"{m} {p[:30]} {(b or b'')[:12]!r}" for m, p, _, b, _ in MALFORMED],
)
async def test_malformed_requests_get_4xx_and_a_one_line_json_error(
    admin: Admin,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    expected: int,
) -> None:
    with structlog.testing.capture_logs() as logs:
        status, answer = await request(admin, method, path, headers=headers, data=body)
    assert status == expected, answer
    if method != "HEAD":
        assert isinstance(answer, dict) and "\n" not in answer["error"], answer
        assert len(answer["error"]) < 200
    assert not [e for e in logs if e["event"] == "admin.request_failed"]
    assert len(admin.notices) == 0
    assert (await request(admin, "GET", "/healthz"))[0] == 200  # still serving


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)  # no shutdown: aiohttp drops a half-closed request unanswered
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /status HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(200)) + b"\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"POST /notices/drain HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=["tls", "long-header", "many-headers", "nul", "negative-length"],
)
async def test_bad_http_gets_4xx_and_logs_through_structlog(admin: Admin, data: bytes) -> None:
    """aiohttp answers broken HTTP itself; its error log goes to structlog (``admin.bad_http``),
    never as a raw traceback on stderr."""
    with structlog.testing.capture_logs() as logs:
        reply = await asyncio.to_thread(_raw, admin.port, data)
        await asyncio.sleep(0)  # let the server finish logging (no timing involved)
    assert reply[:8] in (b"HTTP/1.0", b"HTTP/1.1") and reply[9:10] == b"4", reply[:80]
    assert not [e for e in logs if e["event"] == "admin.request_failed"]


async def test_bad_http_is_not_printed_raw(admin: Admin, capfd: pytest.CaptureFixture[str]) -> None:
    await asyncio.to_thread(_raw, admin.port, b"GET /\x00 HTTP/1.1\r\n\r\n")
    assert (await request(admin, "GET", "/healthz"))[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error handling request" not in err


async def test_excess_operator_requests_get_503_while_healthz_answers() -> None:
    """With every operator slot busy (slow request bodies), the next operator request gets
    503 at once and /healthz still answers."""
    a = make_admin(max_operator_inflight=2)
    a.port = await a.server.start(Address("127.0.0.1", 0))
    a.url = f"http://127.0.0.1:{a.port}"
    held: list[socket.socket] = []
    try:
        for _ in range(2):  # headers of a POST whose body never comes: holds a slot
            s = socket.create_connection(("127.0.0.1", a.port))
            s.sendall(
                b"POST /notices/drain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 50\r\n\r\n{"
            )
            held.append(s)
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            status, _ = await request(a, "GET", "/status", headers=AUTH)
            if status == 503 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        assert status == 503
        assert (await request(a, "GET", "/healthz"))[0] == 200
        assert (await request(a, "GET", "/status"))[0] == 401  # auth is decided first
    finally:
        for s in held:
            s.close()
        await a.server.stop()


# --------------------------------------------------------------------------- redaction

STRADDLING = "straddle-Pa55w0rd-9c1e4f"


async def test_secret_straddling_the_log_cut_is_redacted_whole() -> None:
    """Exception text is redacted before it is cut to 300 characters: a secret placed
    across the cut leaves no prefix in ``admin.request_failed``."""
    REDACTOR.add([Secret(STRADDLING)])
    message = "x" * (MAX_LOGGED_TEXT - 10) + STRADDLING

    def broken() -> StatusDocument:
        raise RuntimeError(message)

    a = make_admin(token=None)
    a.server._status = broken
    a.port = await a.server.start(Address("127.0.0.1", 0))
    a.url = f"http://127.0.0.1:{a.port}"
    try:
        with structlog.testing.capture_logs() as logs:
            assert (await request(a, "GET", "/status"))[0] == 500
    finally:
        await a.server.stop()
    (failed,) = [e for e in logs if e["event"] == "admin.request_failed"]
    assert STRADDLING[:10] not in failed["error"] and failed["error"].endswith("***")


def test_aiohttp_message_straddling_the_cut_is_redacted_whole() -> None:
    """The same for aiohttp's own log messages, through the structlog bridge."""
    REDACTOR.add([Secret(STRADDLING)])
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "y" * 295 + STRADDLING, None, None
    )
    with structlog.testing.capture_logs() as logs:
        _StructlogBridge().emit(record)
    (line,) = logs
    assert STRADDLING[:5] not in line["message"] and line["message"].endswith("***")


async def test_status_is_redacted_once_per_build_and_healthz_never() -> None:
    """A burst of /status requests shares one built body, redacted when it is built, not
    once per response; /healthz (a fixed body) is not redacted; /metrics still is."""
    redacted: list[bytes] = []
    builds = 0

    def redact(body: bytes) -> bytes:
        redacted.append(body)
        return body

    a = make_admin(token=None, redact=redact)
    status = a.server._status

    def counted() -> StatusDocument:
        nonlocal builds
        builds += 1
        return status()

    a.server._status = counted
    a.port = await a.server.start(Address("127.0.0.1", 0))
    a.url = f"http://127.0.0.1:{a.port}"
    try:
        answers = await asyncio.gather(*(request(a, "GET", "/status") for _ in range(30)))
        assert {code for code, _ in answers} == {200}
        assert builds >= 1 and len(redacted) == builds
        redacted.clear()
        assert (await request(a, "GET", "/healthz"))[0] == 200
        assert redacted == []
        assert (await request(a, "GET", "/metrics"))[0] == 200
        assert redacted == [b"sentinel_xds_ready 1\n"]
    finally:
        await a.server.stop()
