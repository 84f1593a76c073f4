"""Who may use the admin API's operator surface, and how long a drain notice counts.

Pure decisions, tested without a listener: the "non-loopback needs a token"
rule (a non-loopback address can be tested here because nothing binds it),
the bearer-token check, the token file's rules, and the drain notices'
acceptance, bound and expiry on an injected clock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog

from redis_sentinel_watch import Address, PrimaryChange
from redis_sentinel_watch.auth import Secret
from xds.ads.loglimit import LogLimiter
from xds.ads.sidecars import Sidecars
from xds.service.admin_auth import (
    READ_ONLY_PATHS,
    Authorizer,
    admin_token,
    exposure_error,
    read_token_file,
)
from xds.service.config import ConfigError, parse_config
from xds.service.notices import MAX_NOTICE_TTL_S, DrainNotices
from xds.service.timeline import Timeline

TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a test token
PRIMARY = Address("127.0.0.1", 6380)
REPLICA = Address("127.0.0.1", 6381)
KNOWN = (PRIMARY, REPLICA)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- exposure rule


@pytest.mark.parametrize(
    "listen",
    ["0.0.0.0:9102", "[::]:9102", "10.0.0.5:9102", "192.0.2.1:9102", "admin.example:9102"],
)
def test_non_loopback_admin_without_token_is_refused(listen: str) -> None:
    """Beyond loopback the operator surface would answer the network: no token, no start."""
    why = exposure_error(Address.parse(listen), None)
    assert why is not None and "admin.token_file" in why and Address.parse(listen).host in why
    assert exposure_error(Address.parse(listen), Secret(TOKEN)) is None


@pytest.mark.parametrize("listen", ["127.0.0.1:9102", "[::1]:9102", "localhost:9102"])
def test_loopback_admin_needs_no_token(listen: str) -> None:
    assert exposure_error(Address.parse(listen), None) is None


def test_read_only_surface_is_exactly_probes_and_metrics() -> None:
    assert frozenset({"/healthz", "/readyz", "/metrics"}) == READ_ONLY_PATHS


# --------------------------------------------------------------------------- bearer token


def test_authorizer_answers_401_missing_403_wrong_and_accepts_the_token() -> None:
    auth = Authorizer(Secret(TOKEN))
    assert auth.required
    assert auth.check(None) == (401, "missing bearer token")
    assert auth.check("") == (401, "missing bearer token")
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, "Bearer \u00e9t\u00e9"):
        assert auth.check(wrong) == (403, "wrong bearer token"), wrong
    assert auth.check(f"Bearer {TOKEN}") is None
    assert auth.check(f"bearer  {TOKEN} ") is None  # the scheme is case-insensitive (RFC 7235)


def test_without_token_operator_requests_are_not_checked() -> None:
    """Only possible on loopback: :func:`exposure_error` refuses anything else at startup."""
    auth = Authorizer(None)
    assert not auth.required and auth.check(None) is None


def _token_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "admin.token"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_token_file_is_read_stripped(tmp_path: Path) -> None:
    assert read_token_file(_token_file(tmp_path, TOKEN + "\n")).reveal() == TOKEN


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        (TOKEN, 0o644, "0644"),
        (TOKEN, 0o640, "0640"),
        ("short-token", 0o600, "at least 16"),
        ("", 0o600, "empty"),
        ("0123456789 abcdef0123", 0o600, "without spaces"),
    ],
)
def test_unsafe_or_weak_token_file_is_refused_naming_the_field(
    tmp_path: Path, text: str, mode: int, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        read_token_file(_token_file(tmp_path, text, mode))
    assert err.value.field == "admin.token_file" and expected in err.value.message
    assert TOKEN not in str(err.value)


def test_token_file_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="FIFO"):
        read_token_file(str(fifo))


def test_admin_token_comes_from_the_configured_file(tmp_path: Path) -> None:
    """Resolved by the config, or read here when the config was loaded without secrets
    (``status``/``events`` need only the admin address and this token)."""
    path = _token_file(tmp_path, TOKEN)
    text = {
        "sentinels": ["127.0.0.1:26379"],
        "groups": {"g": {"listen": "127.0.0.1:6379"}},
        "xds": {"listen": "127.0.0.1:18000"},
        "admin": {"listen": "0.0.0.0:9102", "token_file": path},
    }
    for resolve in (True, False):
        token = admin_token(parse_config(text, resolve_secrets=resolve))
        assert token is not None and token.reveal() == TOKEN
    del text["admin"]
    assert admin_token(parse_config(text)) is None


# --------------------------------------------------------------------------- log limiter


def test_log_limiter_keeps_one_line_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    limiter = LogLimiter(10.0, clock)
    assert limiter.allow("denied") == 0
    assert [limiter.allow("denied") for _ in range(500)] == [None] * 500
    assert limiter.allow("other") == 0
    clock.now += 10.0
    assert limiter.allow("denied") == 500


# --------------------------------------------------------------------------- drain notices


def test_notice_for_a_node_the_group_does_not_have_is_refused_and_stores_nothing() -> None:
    notices = DrainNotices(Clock())
    with structlog.testing.capture_logs() as logs:
        why = notices.note("g", Address("127.0.0.1", 9999), 30, KNOWN)
    assert why is not None and "127.0.0.1:9999" in why and "'g'" in why
    assert len(notices) == 0 and not notices.take("g", Address("127.0.0.1", 9999))
    assert [e["event"] for e in logs] == ["drain.notice_refused"]


def test_notices_are_bounded_to_one_per_group_newest_wins() -> None:
    notices = DrainNotices(Clock())
    for _ in range(10_000):
        assert notices.note("g", REPLICA, 30, KNOWN) is None
    assert notices.note("g", PRIMARY, 30, KNOWN) is None
    assert notices.note("h", PRIMARY, 30, KNOWN) is None
    assert len(notices) == 2
    assert not notices.take("g", REPLICA)  # replaced by the newer notice for PRIMARY
    assert notices.take("g", PRIMARY)
    assert not notices.take("g", PRIMARY)  # once


def test_expired_notice_does_not_label_the_failover() -> None:
    """Expiry is min(ttl_s, MAX_NOTICE_TTL_S): a client asking for 600 s gets 60 s."""
    clock = Clock()
    notices = DrainNotices(clock)
    notices.note("g", PRIMARY, 600, KNOWN)
    clock.now += MAX_NOTICE_TTL_S - 0.1
    assert notices.take("g", PRIMARY)
    notices.note("g", PRIMARY, 600, KNOWN)
    clock.now += MAX_NOTICE_TTL_S + 0.1
    with structlog.testing.capture_logs() as logs:
        assert not notices.take("g", PRIMARY)
    (expired,) = [e for e in logs if e["event"] == "drain.notice_expired"]
    assert expired["node"] == str(PRIMARY) and expired["expired_s_ago"] == pytest.approx(0.1)


def _kill9(old: Address, new: Address) -> PrimaryChange:
    return PrimaryChange("g", old, new, "+sdown", None, 1.0, 2)


def test_unplanned_failover_after_an_expired_notice_is_recorded_as_unplanned() -> None:
    """The alert on unplanned failovers sees a kill -9 even if a drain notice for the
    same primary was planted earlier; a live one labels the failover ``drain``."""
    clock = Clock()
    timeline = Timeline(Sidecars())
    timeline.notices = DrainNotices(clock)
    timeline.notices.note("g", PRIMARY, 30, KNOWN)
    clock.now += 31
    assert timeline.start(_kill9(PRIMARY, REPLICA)).trigger == "sentinel-event"
    timeline.notices.note("g", REPLICA, 30, KNOWN)
    clock.now += 5
    assert timeline.start(_kill9(REPLICA, PRIMARY)).trigger == "drain"
