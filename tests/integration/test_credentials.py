"""Redis and Sentinel credentials end to end, and that no secret value ever leaks.

A real Redis with ``requirepass`` and an ACL user for applications, a real
Sentinel with its own password, the control plane as a real process reading
its own passwords from a 0600 file or an environment variable, and a real
Envoy that reads the sidecar passwords from files on its own host (the
default: they never travel over xDS): the sidecar authenticates upstream as
the ACL user and demands AUTH from its clients. Then every log line and every
admin response is searched for each secret value, after a NACK that quotes a
secret the control plane holds has gone through ``/status`` and the log.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_sentinel_watch import Address
from tests.adsclient import AdsClient
from tests.integration.conftest import GROUP
from tests.resp import OneConnection, RespError
from xds.ads.sidecars import SyncState
from xds.ads.snapshot import CLUSTER
from xds.lab import EnvoyProcess, RedisNode, SentinelNode, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.ops.cli import main

pytestmark = pytest.mark.integration


def _secret(what: str) -> str:
    return f"{what}-{secrets.token_hex(8)}"


def _get(cp: ControlPlane, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{cp.admin}{path}", timeout=2) as resp:
        body: bytes = resp.read()
    return body


@dataclass
class AuthStack:
    passwords: dict[str, str]
    primary: RedisNode
    control_plane: ControlPlane
    envoy: EnvoyProcess
    listen: Address


@pytest.fixture
def auth_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthStack]:
    """Redis (requirepass + ACL user 'app'), a password-protected Sentinel, the control plane
    (debug logs; passwords from files and environment variables) and one Envoy sidecar."""
    pw = {
        "sentinel": _secret("sentinel-pw"),
        "watcher": _secret("redis-default-pw"),
        "app": _secret("app-upstream-pw"),
        "client": _secret("client-downstream-pw"),
    }
    primary = RedisNode.start(
        tmp_path,
        extra_conf=[f"requirepass {pw['watcher']}", f"user app on >{pw['app']} ~* +@all"],
        client_options={"password": pw["watcher"]},
    )
    try:
        sentinel = SentinelNode.start(
            tmp_path,
            monitors=[(GROUP, primary.address)],
            quorum=1,
            extra_conf=[f"requirepass {pw['sentinel']}"],
            group_conf=[f"sentinel auth-pass {{group}} {pw['watcher']}"],
            client_options={"password": pw["sentinel"]},
        )
        secret_dir = tmp_path / "secrets"
        secret_dir.mkdir(mode=0o700)
        for name, value in (("watcher", pw["watcher"] + "\n"), ("app", pw["app"]),
                            ("client", pw["client"])):
            (secret_dir / f"{name}.pass").write_text(value)
            (secret_dir / f"{name}.pass").chmod(0o600)
        monkeypatch.setenv("SX_TEST_SENTINEL_PASSWORD", pw["sentinel"])
        listen = Address("127.0.0.1", free_port())
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        config: dict[str, Any] = yaml.safe_load(
            config_yaml([sentinel.address], {GROUP: listen}, xds, admin)
        )
        config["log"]["level"] = "debug"
        config["sentinel_auth"] = {"password_env": "SX_TEST_SENTINEL_PASSWORD"}
        config["redis_auth"] = {"password_file": str(secret_dir / "watcher.pass")}
        config["groups"][GROUP]["upstream_auth"] = {
            "username": "app",
            "sidecar_password_file": str(secret_dir / "app.pass"),
        }
        config["groups"][GROUP]["downstream_auth"] = {
            "sidecar_password_file": str(secret_dir / "client.pass")
        }
        cp = ControlPlane(tmp_path, yaml.safe_dump(config), xds, admin).start()
        envoy = cp.start_sidecar(tmp_path, "sidecar-auth", listen)
        yield AuthStack(pw, primary, cp, envoy, listen)
    finally:
        stop_all()


async def nack_quoting_a_secret(cp: ControlPlane, sidecar_pw: str, secret: str) -> AdsClient:
    """Fetch the Cluster as a raw client (it must not carry the sidecar's password:
    only the file's path travels) and NACK it quoting a secret the control plane holds;
    returns the open client (its NACK shows in /status while it is connected)."""
    raw = AdsClient(str(cp.xds))
    try:
        await raw.send(CLUSTER, node_id="nacker")
        resp = await raw.recv()
        assert sidecar_pw.encode() not in bytes(resp), "a sidecar password travelled over xDS"
        error = f'Proto constraint validation failed: inline_string: "{secret}"'
        await raw.send(CLUSTER, nonce=resp.nonce, error=error)
        wait_until(
            lambda: any(
                (ts := sc.type("Cluster")) is not None and ts.state is SyncState.NACKED
                for sc in cp.status().sidecars
            ),
            10,
            what="the NACK in /status",
        )
    except BaseException:
        await raw.close()
        raise
    return raw


async def test_credentials_reach_redis_and_no_secret_is_ever_printed(
    auth_stack: AuthStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Upstream AUTH as an ACL user and downstream AUTH at the sidecar work with real Redis
    and Envoy; a client that does not AUTH gets NOAUTH. No secret value appears in the
    control plane's log (debug level), /status, /metrics, /events, /readyz or the
    check-config echo, even after a NACK quoting the password."""
    pw, cp = auth_stack.passwords, auth_stack.control_plane
    conn = OneConnection("127.0.0.1", auth_stack.listen.port)
    try:
        with pytest.raises(RespError, match="NOAUTH"):
            conn.command("SET", "k", "v")
        assert conn.command("AUTH", pw["client"]) == "OK"
        assert conn.command("SET", "through-sidecar", "1") == "OK"
    finally:
        conn.close()
    with auth_stack.primary.client(username="app", password=pw["app"]) as app:
        assert app.get("through-sidecar") == "1"
    with auth_stack.primary.client() as c:
        users = {e.get("user") for e in c.client_list()}
    assert "app" in users, "Envoy's upstream connection is not authenticated as 'app'"

    raw = await nack_quoting_a_secret(cp, pw["app"], pw["watcher"])
    try:
        outputs = {
            path: _get(cp, path).decode() for path in ("/status", "/metrics", "/events", "/readyz")
        }
    finally:
        await raw.close()
    outputs["log"] = cp.log_path.read_text()
    assert main(["check-config", str(cp.config_path)]) == 0
    outputs["check-config"] = capsys.readouterr().out
    for name, text in outputs.items():
        for which, value in pw.items():
            assert value not in text, f"{which} password leaked in {name}"
    assert "***" in outputs["/status"]  # the NACK text is there, redacted
    # Envoy marks these fields sensitive: its own /config_dump shows them redacted
    dump = json.dumps(auth_stack.envoy.config_dump())
    assert pw["app"] not in dump and pw["client"] not in dump and "[redacted]" in dump
    assert "upstream AUTH as app" in outputs["check-config"]
    assert any(e["event"] == "xds.nack" for e in cp.events())
    assert not cp.events("xds.transport.unprotected"), "loopback plaintext without inline passwords"
