"""Secrets: read from files or environment variables, never shown, redacted from output.

What must hold whatever the password is: no repr/str/f-string of a config or
its parts shows it; any log line or admin body that still contains it (in
raw or JSON-escaped form) is redacted; resource versions, which hash over the
password-bearing resources, do not contain it; and gRPC clients never receive it.
"""

from __future__ import annotations

import io
import json
import os
import socket
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
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from redis_sentinel_watch import Address
from redis_sentinel_watch.auth import Credentials, Secret
from tests.certs import TestCA
from xds.ads.snapshot import CLUSTER, LISTENER
from xds.ops.cli import main
from xds.resources.profiles import Profile, Profiles
from xds.resources.redis_group import GroupSpec, PasswordFile, build_cluster, build_listener
from xds.resources.snapshot import build_snapshot
from xds.service.admin_documents import StatusDocument
from xds.service.admin_http import AdminServer
from xds.service.config import ConfigError, load_config, load_config_text
from xds.service.logs import configure_logging
from xds.service.secrets import (
    MIN_PASSWORD_LENGTH,
    REDACTED,
    REDACTOR,
    Redactor,
    UnresolvedSecret,
    config_secrets,
)

PRIMARY = Address("127.0.0.1", 7001)
LISTEN = Address("127.0.0.1", 6379)

# printable passwords, as an operator would put in a file (no newline: the file's last
# newline is stripped), long enough to be redacted
passwords = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=8,
    max_size=40,
).filter(lambda s: s.strip() == s and "***" not in s)


def mtls_xds(directory: Path) -> str:
    """An ``xds:`` section with mutual TLS (real certificates): inline sidecar passwords
    are accepted only then."""
    ca = TestCA(directory / "ca")
    server = ca.issue("control-plane", server=True)
    return (
        f'xds: {{listen: "127.0.0.1:18000", tls: {{cert_file: "{server.cert}", '
        f'key_file: "{server.key}", client_ca_file: "{ca.cert_file}"}}}}\n'
    )


def private_file(path: Path, text: str) -> Path:
    """A secret file as a deployment has it: mode 0600."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def config_text(password_file: Path, xds: str) -> str:
    return f"""\
sentinels: ["127.0.0.1:26379"]
groups:
  g:
    listen: "127.0.0.1:6379"
    upstream_auth: {{username: app, password_file: "{password_file}"}}
    downstream_auth: {{password_env: SX_UNIT_CLIENT_PW}}
{xds}sentinel_auth: {{password_env: SX_UNIT_SENTINEL_PW}}
redis_auth: {{password_file: "{password_file}"}}
"""


def test_passwords_come_from_files_and_env_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every password is read from the file or variable the config names; the Config,
    its groups and their credentials print only Secret('***')."""
    pw_file = private_file(tmp_path / "app.pass", "app-file-password\n")
    monkeypatch.setenv("SX_UNIT_CLIENT_PW", "client-env-password")
    monkeypatch.setenv("SX_UNIT_SENTINEL_PW", "sentinel-env-password")
    config = load_config_text(config_text(pw_file, mtls_xds(tmp_path)))
    (group,) = config.groups
    assert group.upstream_auth == Credentials(Secret("app-file-password"), "app")
    assert group.downstream_auth == Credentials(Secret("client-env-password"))
    assert {s.reveal() for s in config_secrets(config)} == {
        "app-file-password",
        "client-env-password",
        "sentinel-env-password",
    }
    for text in (repr(config), str(config), f"{config}", repr(group), str(group.upstream_auth)):
        for value in ("app-file-password", "client-env-password", "sentinel-env-password"):
            assert value not in text
        assert "Secret('***')" in text


INLINE_REFUSED = (
    "inline sidecar passwords travel over xDS; require client certificates "
    "(xds.tls.require_client_cert) or use sidecar_password_file"
)


@pytest.mark.parametrize(
    ("auth", "field", "fragment"),
    [
        ("{password: inline-secret}", "groups.g.upstream_auth.password", "not accepted"),
        ("{password_env: SX_UNIT_UNSET_VAR}", "groups.g.upstream_auth.password_env", "not set"),
        ("{password_env: SX_UNIT_SHORT_PW}", "groups.g.upstream_auth.password_env", "7 char"),
        ("{password_file: /nonexistent/pw}", "groups.g.upstream_auth.password_file", "No such"),
        ("{username: 'a b', password_env: HOME}", "groups.g.upstream_auth.username", "spaces"),
        ("{password_env: HOME, password_file: /x}", "groups.g.upstream_auth", "exactly one"),
        ("{sidecar_password_file: rel/pw}", "groups.g.upstream_auth.sidecar_password_file", "abs"),
        (
            "{sidecar_password_file: /p, password_env: HOME}",
            "groups.g.upstream_auth",
            "exactly one of 'sidecar_password_file', 'password_file' or 'password_env'",
        ),
    ],
)
def test_auth_mistakes_name_the_field_and_never_echo_a_value(
    auth: str, field: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad upstream_auth settings are one ConfigError naming the field (with mutual TLS, so
    inline passwords are allowed at all); an inline password is refused without being
    repeated, and so is a short one."""
    monkeypatch.setenv("SX_UNIT_SHORT_PW", "short-7")
    text = (
        'sentinels: ["127.0.0.1:26379"]\n'
        f'groups: {{g: {{listen: "127.0.0.1:6379", upstream_auth: {auth}}}}}\n'
    ) + mtls_xds(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_config_text(text)
    assert err.value.field == field
    assert fragment in err.value.message
    assert "inline-secret" not in str(err.value) and "short-7" not in str(err.value)


@pytest.mark.parametrize("side", ["upstream_auth", "downstream_auth"])
@pytest.mark.parametrize("source", ["password_file: /nonexistent/pw", "password_env: HOME"])
@pytest.mark.parametrize("tls", ["plaintext", "server-only"])
def test_inline_sidecar_passwords_need_client_certificates(
    side: str, source: str, tls: str, tmp_path: Path
) -> None:
    """An inline sidecar password on a plaintext or server-only-TLS xDS listener is refused
    naming the field, before the file or variable is even read."""
    xds = 'xds: {listen: "127.0.0.1:18000"}\n'
    if tls == "server-only":
        ca = TestCA(tmp_path / "ca")
        server = ca.issue("control-plane", server=True)
        xds = (
            f'xds: {{listen: "127.0.0.1:18000", tls: {{cert_file: "{server.cert}", '
            f'key_file: "{server.key}"}}}}\n'
        )
    text = (
        'sentinels: ["127.0.0.1:26379"]\n'
        f'groups: {{g: {{listen: "127.0.0.1:6379", {side}: {{{source}}}}}}}\n'
    ) + xds
    with pytest.raises(ConfigError) as err:
        load_config_text(text)
    assert err.value.field == f"groups.g.{side}.{source.split(':', maxsplit=1)[0]}"
    assert err.value.message == INLINE_REFUSED


def test_sidecar_password_file_is_a_path_the_control_plane_never_reads() -> None:
    """sidecar_password_file becomes PasswordFile(path, username) on a plaintext listener;
    the control plane does not open it (it lives on the sidecar's host) and holds no
    secret for it."""
    config = load_config_text(
        'sentinels: ["127.0.0.1:26379"]\n'
        'groups: {g: {listen: "127.0.0.1:6379",'
        " upstream_auth: {username: app, sidecar_password_file: /run/secrets/redis-app},"
        " downstream_auth: {sidecar_password_file: /run/secrets/redis-clients}}}\n"
        'xds: {listen: "127.0.0.1:18000"}\n'
    )
    (group,) = config.groups
    assert group.upstream_auth == PasswordFile("/run/secrets/redis-app", "app")
    assert group.downstream_auth == PasswordFile("/run/secrets/redis-clients")
    assert config_secrets(config) == []


@given(passwords)
def test_secret_never_shows_in_repr_str_or_format(value: str) -> None:
    """Whatever the value, the ways Python turns a Secret or Credentials into text hide it."""
    scaffolding = repr(Credentials(Secret("x"), "app"))  # a value that *is* field-name text
    assume(value not in scaffolding)  # (e.g. "username") shows by coincidence, not by leak
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
    """Values shorter than the shortest password validation accepts are not redacted (they
    would mangle every line); text without a secret passes unchanged; a secret containing
    another is replaced whole."""
    assert MIN_PASSWORD_LENGTH == 8
    redactor = Redactor([Secret("info"), Secret("hunter22"), Secret("hunter22-longer")])
    assert redactor.text("info def") == "info def"
    assert redactor.text("x hunter22-longer y hunter22") == "x *** y ***"
    assert not Redactor([Secret("short-7")])
    assert not Redactor([UnresolvedSecret()])


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
    status = StatusDocument(False, f"quoted {value}", {}, (), (), (), ())
    admin = AdminServer(
        lambda: status,
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
    pw_file = private_file(tmp_path / "pw", "grpc-must-not-see")
    config = load_config_text(
        'sentinels: ["127.0.0.1:26379"]\n'
        f'groups: {{g: {{listen: "127.0.0.1:6379", upstream_auth: {{password_file: "{pw_file}"}},'
        f' downstream_auth: {{password_file: "{pw_file}"}}}}}}\n' + mtls_xds(tmp_path)
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


# ------------------------------------------------------------------ secret files, like ssh keys


def redis_auth_error(password_file: Path | str) -> ConfigError:
    """The error for a config whose redis_auth.password_file is ``password_file``."""
    with pytest.raises(ConfigError) as err:
        load_config_text(
            'sentinels: ["127.0.0.1:26379"]\n'
            'groups: {g: {listen: "127.0.0.1:6379"}}\n'
            'xds: {listen: "127.0.0.1:18000"}\n'
            f'redis_auth: {{password_file: "{password_file}"}}\n'
        )
    assert err.value.field == "redis_auth.password_file"
    assert "\n" not in str(err.value)
    return err.value


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_secret_file_open_to_group_or_others_is_refused_naming_path_and_mode(
    tmp_path: Path, mode: int
) -> None:
    """Like ssh with a private key: any group/other permission refuses the file, and the
    one line names the path and the octal mode, never the content."""
    secret = private_file(tmp_path / "redis.pass", "mode-test-password\n")
    secret.chmod(mode)
    err = redis_auth_error(secret)
    assert err.message == (
        f"cannot use '{secret}': mode {mode:04o} gives group or others access; chmod 600 it"
    )
    assert "mode-test-password" not in str(err)
    secret.chmod(0o600)
    assert load_config_text(
        'sentinels: ["127.0.0.1:26379"]\ngroups: {g: {listen: "127.0.0.1:6379"}}\n'
        f'xds: {{listen: "127.0.0.1:18000"}}\nredis_auth: {{password_file: "{secret}"}}\n'
    ).redis_auth == Credentials(Secret("mode-test-password"))


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    """A FIFO with no writer would block a plain open() forever; it is refused at once."""
    fifo = tmp_path / "redis.pass"
    os.mkfifo(fifo, 0o600)
    assert (
        redis_auth_error(fifo).message == f"cannot use '{fifo}': it is a FIFO, not a regular file"
    )


def test_devices_and_directories_are_refused(tmp_path: Path) -> None:
    """/dev/zero would be read until memory runs out; a directory is no password either."""
    assert redis_auth_error("/dev/zero").message == (
        "cannot use '/dev/zero': it is a character device, not a regular file"
    )
    assert "it is a directory, not a regular file" in redis_auth_error(tmp_path).message


def test_oversize_secret_file_is_refused(tmp_path: Path) -> None:
    """More than 4 KiB is no password: refused by size before anything is kept."""
    big = private_file(tmp_path / "big.pass", "x" * 4097)
    assert redis_auth_error(big).message == (
        f"cannot use '{big}': it has 4097 bytes, more than the 4096 allowed"
    )
    private_file(big, "x" * 4096)
    redis_auth_error_free = load_config_text(
        'sentinels: ["127.0.0.1:26379"]\ngroups: {g: {listen: "127.0.0.1:6379"}}\n'
        f'xds: {{listen: "127.0.0.1:18000"}}\nredis_auth: {{password_file: "{big}"}}\n'
    )
    assert redis_auth_error_free.redis_auth is not None


def test_symlink_is_refused_even_to_a_private_file(tmp_path: Path) -> None:
    """A symbolic link is not followed (O_NOFOLLOW): a link to /etc/shadow, or to any
    file, is refused, so a typo cannot push another file's first line to the sidecars."""
    shadow_like = private_file(tmp_path / "shadow", "root:$6$salt$hash:19000:0:99999:7:::\n")
    link = tmp_path / "redis.pass"
    link.symlink_to(shadow_like)
    err = redis_auth_error(link)
    assert err.message == f"cannot use '{link}': it is a symbolic link; name the file itself"
    assert "root:" not in str(err)
    etc_link = tmp_path / "etc-shadow.pass"
    etc_link.symlink_to("/etc/shadow")
    assert "symbolic link" in redis_auth_error(etc_link).message


def test_short_passwords_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter than 8 characters is refused from a file and from a variable: the redactor
    could not mask it without mangling (and so revealing) ordinary log text."""
    short = private_file(tmp_path / "short.pass", "abc1234\n")
    assert redis_auth_error(short).message == (
        f"cannot use '{short}': it holds 7 characters; at least 8 are required"
    )
    monkeypatch.setenv("SX_UNIT_SHORT", "abc1234")
    with pytest.raises(ConfigError) as err:
        load_config_text(
            'sentinels: ["127.0.0.1:26379"]\ngroups: {g: {listen: "127.0.0.1:6379"}}\n'
            'xds: {listen: "127.0.0.1:18000"}\nsentinel_auth: {password_env: SX_UNIT_SHORT}\n'
        )
    assert str(err.value) == (
        "sentinel_auth.password_env: environment variable 'SX_UNIT_SHORT': "
        "it holds 7 characters; at least 8 are required"
    )
    assert "abc1234" not in str(err.value)


def test_config_file_must_be_a_regular_file_of_at_most_1_mib(tmp_path: Path) -> None:
    """The config file gets the same type and size rules (not the mode: it holds no
    secret): a FIFO, /dev/zero or a 1 MiB+ file is one line, never a hang or a crash."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as err:
        load_config(fifo)
    assert str(err.value) == f"cannot read config file '{fifo}': it is a FIFO, not a regular file"
    with pytest.raises(ConfigError, match="it is a character device, not a regular file"):
        load_config("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1024 * 1024 + 1))
    with pytest.raises(ConfigError, match=r"it has 1048577 bytes, more than the 1048576 allowed"):
        load_config(big)


# ------------------------------------------------------------------ commands without secrets

AUTH_CONFIG = """\
sentinels: ["127.0.0.1:26379"]
groups: {{g: {{listen: "127.0.0.1:6379"}}}}
xds: {{listen: "127.0.0.1:18000"}}
admin: {{listen: "127.0.0.1:{port}"}}
sentinel_auth: {{password_env: SX_UNIT_UNSET_SENTINEL_PW}}
redis_auth: {{password_file: /nonexistent/redis.pass}}
"""


def test_config_parses_without_resolving_secrets(tmp_path: Path) -> None:
    """resolve_secrets=False validates everything else and reads no password: the
    credentials keep their user names and hold a stand-in that refuses to be revealed."""
    path = tmp_path / "config.yaml"
    path.write_text(AUTH_CONFIG.format(port=9102))
    with pytest.raises(ConfigError, match="SX_UNIT_UNSET_SENTINEL_PW"):
        load_config(path)
    config = load_config(path, resolve_secrets=False)
    assert config.admin_listen == Address("127.0.0.1", 9102)
    assert config.sentinel_auth is not None
    assert isinstance(config.sentinel_auth.password, UnresolvedSecret)
    with pytest.raises(RuntimeError, match="not resolved"):
        config.sentinel_auth.password.reveal()
    assert config_secrets(config) == []
    path.write_text(AUTH_CONFIG.format(port=9102).replace("sentinels: [", "sentinels: [1, "))
    with pytest.raises(ConfigError, match=r"sentinels\[0\]"):  # still validated
        load_config(path, resolve_secrets=False)


@pytest.mark.parametrize("command", ["status", "events"])
def test_status_and_events_work_without_the_password_environment(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the password variable unset and the password file missing, status/events
    --config get past the config and ask the admin API (here: nothing listens, exit 1),
    instead of exiting 2 on a password they do not need."""
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "config.yaml"
    path.write_text(AUTH_CONFIG.format(port=port))
    code = main([command, "--config", str(path)])
    err = capsys.readouterr().err
    assert "config error" not in err
    assert code == 1, err
