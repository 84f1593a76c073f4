"""Secrets: read from files or environment variables, never shown, redacted from output.

What must hold whatever the password is: no repr/str/f-string of a config or
its parts shows it; any log line or admin body that still contains it (in
raw or JSON-escaped form) is redacted; resource versions, which hash over the
password-bearing resources, do not contain it; and gRPC clients never receive it.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import aiohttp
import pytest
import structlog
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import (
    RedisProtocolOptions,
    RedisProxy,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Credentials, Secret
from xds.ads.snapshot import CLUSTER, LISTENER
from xds.resources.profiles import Profile, Profiles
from xds.resources.redis_group import GroupSpec, build_cluster, build_listener
from xds.resources.snapshot import build_snapshot
from xds.service.admin_http import AdminServer
from xds.service.config import ConfigError, load_config_text
from xds.service.logs import configure_logging
from xds.service.secrets import REDACTED, REDACTOR, Redactor, config_secrets

PRIMARY = Address("127.0.0.1", 7001)
LISTEN = Address("127.0.0.1", 6379)

# printable passwords, as an operator would put in a file (no newline: the file's last
# newline is stripped), long enough to be redacted
passwords = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=8,
    max_size=40,
).filter(lambda s: s.strip() == s and "***" not in s)


def config_text(password_file: Path) -> str:
    return f"""\
sentinels: ["127.0.0.1:26379"]
groups:
  g:
    listen: "127.0.0.1:6379"
    upstream_auth: {{username: app, password_file: "{password_file}"}}
    downstream_auth: {{password_env: SX_UNIT_CLIENT_PW}}
xds: {{listen: "127.0.0.1:18000"}}
sentinel_auth: {{password_env: SX_UNIT_SENTINEL_PW}}
redis_auth: {{password_file: "{password_file}"}}
"""


def test_passwords_come_from_files_and_env_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every password is read from the file or variable the config names; the Config,
    its groups and their credentials print only Secret('***')."""
    pw_file = tmp_path / "app.pass"
    pw_file.write_text("app-file-password\n")
    monkeypatch.setenv("SX_UNIT_CLIENT_PW", "client-env-password")
    monkeypatch.setenv("SX_UNIT_SENTINEL_PW", "sentinel-env-password")
    config = load_config_text(config_text(pw_file))
    (group,) = config.groups
    assert group.upstream_auth == Credentials(Secret("app-file-password"), "app")
    assert group.downstream_auth == Credentials(Secret("client-env-password"))
    assert {s.reveal() for s in config_secrets(config)} == {
        "app-file-password",
        "client-env-password",
        "sentinel-env-password",
    }
    for text in (repr(config), str(config), f"{config}", repr(group), str(group.upstream_auth)):
        assert "password" not in text.replace("password=", "")
        assert "Secret('***')" in text


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ("{password: inline-secret}", "groups.g.upstream_auth.password"),
        ("{password_env: SX_UNIT_UNSET_VAR}", "groups.g.upstream_auth.password_env"),
        ("{password_file: /nonexistent/pw}", "groups.g.upstream_auth.password_file"),
        ("{username: 'a b', password_env: HOME}", "groups.g.upstream_auth.username"),
        ("{password_env: HOME, password_file: /x}", "groups.g.upstream_auth"),
    ],
)
def test_auth_mistakes_name_the_field_and_never_echo_a_value(auth: str, field: str) -> None:
    """Bad upstream_auth settings are one ConfigError naming the field; an inline
    password is refused without being repeated."""
    text = (
        'sentinels: ["127.0.0.1:26379"]\n'
        f'groups: {{g: {{listen: "127.0.0.1:6379", upstream_auth: {auth}}}}}\n'
        'xds: {listen: "127.0.0.1:18000"}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(text)
    assert err.value.field == field
    assert "inline-secret" not in str(err.value)


@given(passwords)
def test_secret_never_shows_in_repr_str_or_format(value: str) -> None:
    """Whatever the value, the ways Python turns a Secret or Credentials into text hide it."""
    secret = Secret(value)
    creds = Credentials(secret, "app")
    for text in (repr(secret), str(secret), f"{secret}", repr(creds), str(creds)):
        assert value not in text
    assert secret.reveal() == value


@given(passwords, st.text(alphabet=string.printable, max_size=30))
@settings(max_examples=200)
def test_redactor_removes_raw_and_json_escaped_forms(value: str, around: str) -> None:
    """A line holding the value as written, JSON-escaped (ASCII or not) comes out without it."""
    redactor = Redactor([Secret(value)])
    line = (
        around + value + around + json.dumps({"e": value}) + json.dumps([value], ensure_ascii=False)
    )
    out = redactor.text(line)
    assert value not in out
    assert json.dumps(value)[1:-1] not in out
    assert redactor.data(line.encode()) == out.encode()
    assert out.count(REDACTED) >= 3


def test_redactor_leaves_short_values_and_other_text_alone() -> None:
    """Values under 4 characters are not redacted (they would mangle every line); text
    without a secret passes unchanged; a secret containing another is replaced whole."""
    redactor = Redactor([Secret("abc"), Secret("hunter2"), Secret("hunter2-longer")])
    assert redactor.text("abc def") == "abc def"
    assert redactor.text("x hunter2-longer y hunter2") == "x *** y ***"
    assert not Redactor([Secret("ab")])


def test_log_lines_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure_logging's renderer redacts registered secrets from every JSON line, nested
    values included."""
    value = "log-secret-7f3a9c"
    REDACTOR.add([Secret(value)])
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    try:
        structlog.get_logger("t").warning(
            "xds.nack", error=f'inline_string: "{value}"', n={"v": value}
        )
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    assert value not in line and line.count(REDACTED) == 2
    assert json.loads(line)["event"] == "xds.nack"


async def test_admin_bodies_are_redacted() -> None:
    """Every admin response body (JSON and the Prometheus text) passes the redactor."""
    value = "admin-secret-91bd"
    redactor = Redactor([Secret(value)])
    admin = AdminServer(
        lambda: {"nack_detail": f"quoted {value}"},
        lambda: (True, value),
        metrics=f'x{{detail="{value}"}} 1\n'.encode,
        redact=redactor.data,
    )
    port = await admin.start(Address("127.0.0.1", 0))
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/status", "/readyz", "/metrics"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    body = await resp.text()
                assert value not in body and REDACTED in body, path
    finally:
        await admin.stop()


@given(passwords, passwords)
@settings(max_examples=50, deadline=None)
def test_versions_do_not_contain_the_password_but_follow_it(first: str, second: str) -> None:
    """Versions are 16-hex-digit SHA-256 prefixes: they never contain the password, yet a
    new upstream password is a new Cluster version (so it reaches every sidecar) and leaves
    the Listener's version alone."""
    specs = [
        GroupSpec("g", LISTEN, PRIMARY, upstream_auth=Credentials(Secret(pw), "app"))
        for pw in (first, second)
    ]
    snaps = [build_snapshot([s]) for s in specs]
    for snap, pw in zip(snaps, (first, second), strict=True):
        for version in snap.versions.values():
            assert len(version) == 16 and set(version) <= set(string.hexdigits.lower())
            assert pw not in version
    assert snaps[0].version(LISTENER) == snaps[1].version(LISTENER)
    assert (snaps[0].version(CLUSTER) == snaps[1].version(CLUSTER)) == (first == second)


def test_credentials_go_into_redis_proxy_options() -> None:
    """upstream_auth becomes the Cluster's redis_proxy RedisProtocolOptions (user and
    password inline); downstream_auth the Listener's downstream_auth_passwords/username."""
    spec = GroupSpec(
        "g",
        LISTEN,
        PRIMARY,
        upstream_auth=Credentials(Secret("up-pw-123"), "app"),
        downstream_auth=Credentials(Secret("down-pw-456"), "client"),
    )
    cluster = Cluster.FromString(bytes(build_cluster(spec)))
    options = cluster.typed_extension_protocol_options["envoy.filters.network.redis_proxy"].unpack()
    assert isinstance(options, RedisProtocolOptions)
    assert options.auth_password.inline_string == "up-pw-123"
    assert options.auth_username.inline_string == "app"
    listener = Listener.FromString(bytes(build_listener(spec)))
    proxy = listener.filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(proxy, RedisProxy)
    assert [d.inline_string for d in proxy.downstream_auth_passwords] == ["down-pw-456"]
    assert proxy.downstream_auth_username.inline_string == "client"
    plain = build_cluster(GroupSpec("g", LISTEN, PRIMARY))
    assert not plain.typed_extension_protocol_options


def test_grpc_clients_are_never_sent_redis_passwords(tmp_path: Path) -> None:
    """gRPC's own xDS clients do not speak Redis: their profile's snapshot carries no
    password at all, while an Envoy sidecar's does."""
    pw_file = tmp_path / "pw"
    pw_file.write_text("grpc-must-not-see")
    config = load_config_text(
        'sentinels: ["127.0.0.1:26379"]\n'
        f'groups: {{g: {{listen: "127.0.0.1:6379", upstream_auth: {{password_file: "{pw_file}"}},'
        f' downstream_auth: {{password_file: "{pw_file}"}}}}}}\n'
        'xds: {listen: "127.0.0.1:18000"}\n'
    )
    (g,) = config.groups
    spec = GroupSpec(
        "g", g.listen, PRIMARY, upstream_auth=g.upstream_auth, downstream_auth=g.downstream_auth
    )
    profiles = Profiles(config.groups)
    envoy = profiles.snapshot(None, [spec])
    grpc = profiles.snapshot(Profile(("g",), grpc=True), [spec])

    def payload(snap: object) -> bytes:
        return b"".join(b for r in snap.by_type.values() for b in r.items.values())  # type: ignore[attr-defined]

    assert b"grpc-must-not-see" in payload(envoy)
    assert b"grpc-must-not-see" not in payload(grpc)
