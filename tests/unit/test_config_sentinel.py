"""Config sections for watching Sentinel: react-first/fence options, AUTH and TLS.

Secrets come from a file or an environment variable, never inline, and never
appear in an error message or a ``repr``; every problem names its field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from redis_sentinel_watch import Credentials, Secret, TlsSettings
from xds.service.config import Config, ConfigError, load_config_text

BASE = """
sentinels: ["127.0.0.1:26379"]
groups: {mymaster: {listen: "127.0.0.1:6380"}}
xds: {listen: "127.0.0.1:18000"}
"""


def load(extra: str) -> Config:
    return load_config_text(BASE + extra)


def error(extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(extra)
    return info.value


def test_defaults_react_first_with_fence() -> None:
    """Without a watch section: switch on promotion, probe every 20 ms, fence for 2 s."""
    config = load("")
    assert config.watch.react_on_promotion is True
    assert config.watch.promotion_probe_interval_s == 0.02
    assert config.watch.fence_pause_ms == 2000
    assert config.sentinel_auth is None and config.redis_auth is None and config.tls is None


def test_watch_options() -> None:
    """The new watch keys parse and are range-checked by name."""
    config = load(
        "watch: {react_on_promotion: false, promotion_probe_interval_s: 0.01, fence_pause_ms: 0}"
    )
    assert not config.watch.react_on_promotion
    assert config.watch.promotion_probe_interval_s == 0.01
    assert config.watch.fence_pause_ms == 0
    assert error("watch: {fence_pause_ms: -1}").field == "watch.fence_pause_ms"
    assert error("watch: {fence_pause_ms: 1.5}").field == "watch.fence_pause_ms"
    assert error("watch: {react_on_promotion: 1}").field == "watch.react_on_promotion"
    assert (
        error("watch: {promotion_probe_interval_s: 0}").field == "watch.promotion_probe_interval_s"
    )


def test_password_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """password_file (trailing newline stripped) and password_env give Secrets; the
    username is kept; nothing prints the password."""
    secret_file = tmp_path / "pass"
    secret_file.write_text("s3cret-file\n")
    secret_file.chmod(0o600)
    monkeypatch.setenv("REDIS_PW", "s3cret-env")
    config = load(
        f"sentinel_auth: {{username: watcher, password_file: '{secret_file}'}}\n"
        "redis_auth: {password_env: REDIS_PW}\n"
    )
    assert config.sentinel_auth == Credentials(Secret("s3cret-file"), "watcher")
    assert config.redis_auth == Credentials(Secret("s3cret-env"))
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.sentinel_auth)
    assert config.sentinel_auth.client_options() == {
        "password": "s3cret-file",
        "username": "watcher",
    }


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ("sentinel_auth: {password: hunter2}", "sentinel_auth.password", "inline"),
        ("sentinel_auth: {username: x}", "sentinel_auth", "exactly one"),
        (
            "sentinel_auth: {password_env: A, password_file: /x}",
            "sentinel_auth",
            "exactly one",
        ),
        ("redis_auth: {password_env: SURELY_NOT_SET_VAR}", "redis_auth.password_env", "not set"),
        ("redis_auth: {password_file: /nonexistent/pw}", "redis_auth.password_file", "cannot"),
        ("redis_auth: {password_env: X, user: y}", "redis_auth.user", "unknown key"),
        ("sentinel_auth: {username: 'a b', password_env: HOME}", "sentinel_auth.username", ""),
        ("sentinel_auth: []", "sentinel_auth", "mapping"),
        ("tls: {ca_file: /nonexistent/ca.pem}", "tls.ca_file", "not a readable file"),
        ("tls: {verify: yes-please}", "tls.verify", "true or false"),
        ("tls: {cafile: x}", "tls.cafile", "did you mean 'ca_file'"),
    ],
)
def test_bad_auth_and_tls(extra: str, field: str, fragment: str) -> None:
    """Each bad auth/TLS input is one error naming the field; the inline password is not
    echoed."""
    exc = error(extra)
    assert exc.field == field
    assert fragment in exc.message
    assert "hunter2" not in str(exc)


def test_empty_password_file_rejected(tmp_path: Path) -> None:
    """An empty password file is an error, not an empty password."""
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    exc = error(f"redis_auth: {{password_file: '{empty}'}}")
    assert exc.field == "redis_auth.password_file" and "empty" in exc.message


def test_tls(tmp_path: Path) -> None:
    """TLS files must be readable; cert and key come together; verify defaults to true."""
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "c.pem", "c.key"))
    for f in (ca, cert, key):
        f.write_text("x")
    config = load(f"tls: {{ca_file: '{ca}', cert_file: '{cert}', key_file: '{key}'}}")
    assert config.tls == TlsSettings(str(ca), str(cert), str(key), True)
    options = config.tls.client_options()
    assert options["ssl"] is True and options["ssl_cert_reqs"] == "required"
    assert error(f"tls: {{cert_file: '{cert}'}}").field == "tls.key_file"
    assert load("tls: {verify: false}").tls == TlsSettings(verify=False)
