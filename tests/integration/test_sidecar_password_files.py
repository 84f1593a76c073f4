"""Sidecar passwords read from files on the sidecar's own host: only paths travel over xDS.

A real Redis (``requirepass`` plus an ACL user ``app`` for the sidecar), a real
Envoy and the control plane; the group's ``upstream_auth`` and
``downstream_auth`` name files in a directory standing for the sidecar's host.
The first test runs ``sentinel-xds serve`` from a config (the whole chain:
config key → GroupSpec → DataSource ``filename`` → Envoy) and reads every
response a raw xDS client can get, looking for password bytes. The others feed
hand-made GroupSpecs to the protocol layer (as test_xds_envoy does) to pin down
what Envoy 1.40 itself does with the file, because docs/deploy.md tells
operators how to write, rotate and check these files on that basis:

* a missing file (either one) is a Listener NACK naming the path: the control
  plane shows it in ``/status`` and the log (``xds.nack``), and no Redis
  listener exists on that sidecar;
* the bytes are used as they are: a trailing newline is part of the password;
* the downstream file is read when the Listener is built; the upstream file
  each time Envoy opens an upstream connection, so rewriting it in place
  rotates the upstream password with no xDS change (an upstream connection
  whose AUTH failed stays open, and unauthenticated, until something closes it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

from redis_sentinel_watch import Address
from tests.adsclient import AdsClient
from tests.integration.conftest import GROUP
from tests.integration.test_xds_envoy import (  # the protocol layer fed by hand
    ControlPlane as ProtocolLayer,
)
from tests.integration.test_xds_envoy import config, envoy, serve, started, until
from tests.resp import ConnectionLost, OneConnection, RespError
from xds.ads.sidecars import SyncState
from xds.ads.snapshot import CLUSTER, ENDPOINT, LISTENER
from xds.lab import EnvoyProcess, RedisNode, SentinelNode, free_port, stop_all
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.resources.redis_group import GroupSpec, PasswordFile

pytestmark = pytest.mark.integration

#: ``started`` is test_xds_envoy's fixture (what to stop after each test), reused here
__all__ = ["started"]


def _secret(what: str) -> str:
    return f"{what}-{secrets.token_hex(8)}"


def _write(path: Path, data: str, mode: int = 0o640) -> Path:
    """Replace ``path`` atomically (write a sibling, rename), as docs/deploy.md asks: Envoy
    must never find the file missing or half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def _command(port: int, *commands: tuple[str, ...]) -> list[object]:
    """Each command's reply (or error text) on one new connection to the sidecar."""
    conn = OneConnection("127.0.0.1", port, timeout=5)
    out: list[object] = []
    try:
        for args in commands:
            try:
                out.append(conn.command(*args))
            except RespError as exc:
                out.append(f"error: {exc}")
    finally:
        conn.close()
    return out


def _password_redis(workdir: Path, requirepass: str, app_password: str) -> RedisNode:
    """A Redis with ``requirepass`` (the control plane's and our clients' password) and
    an ACL user ``app`` for the sidecar's upstream AUTH."""
    return RedisNode.start(
        workdir,
        extra_conf=[f"requirepass {requirepass}", f"user app on >{app_password} ~* +@all"],
        client_options={"password": requirepass},
    )


@dataclass
class FileStack:
    passwords: dict[str, str]
    files: dict[str, Path]
    primary: RedisNode
    control_plane: ControlPlane
    envoy: EnvoyProcess
    listen: Address


@pytest.fixture
def file_stack(tmp_path: Path) -> Iterator[FileStack]:
    """Redis (requirepass + ACL user 'app'), a Sentinel, ``sentinel-xds serve`` whose
    config names sidecar password files, and one Envoy sidecar whose "host" has them."""
    pw = {
        "watcher": _secret("redis-default-pw"),
        "app": _secret("app-upstream-pw"),
        "client": _secret("client-downstream-pw"),
    }
    primary = _password_redis(tmp_path, pw["watcher"], pw["app"])
    try:
        sentinel = SentinelNode.start(
            tmp_path,
            monitors=[(GROUP, primary.address)],
            quorum=1,
            group_conf=[f"sentinel auth-pass {{group}} {pw['watcher']}"],
        )
        # the control plane's own secret, and the sidecar host's files (root:envoy 0640)
        watcher_file = _write(tmp_path / "cp-secrets" / "watcher.pass", pw["watcher"], 0o600)
        host = tmp_path / "sidecar-host" / "etc" / "docker-registry"
        files = {
            "app": _write(host / "redis-upstream.pass", pw["app"]),
            "client": _write(host / "redis.pass", pw["client"]),
        }
        listen = Address("127.0.0.1", free_port())
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        cfg: dict[str, Any] = yaml.safe_load(
            config_yaml([sentinel.address], {GROUP: listen}, xds, admin)
        )
        cfg["redis_auth"] = {"password_file": str(watcher_file)}
        cfg["groups"][GROUP]["upstream_auth"] = {
            "username": "app",
            "sidecar_password_file": str(files["app"]),
        }
        cfg["groups"][GROUP]["downstream_auth"] = {"sidecar_password_file": str(files["client"])}
        cp = ControlPlane(tmp_path, yaml.safe_dump(cfg), xds, admin).start()
        proxy = cp.start_sidecar(tmp_path, "sidecar-files", listen)
        yield FileStack(pw, files, primary, cp, proxy, listen)
    finally:
        stop_all()


async def _response(raw: AdsClient, type_url: str) -> DiscoveryResponse:
    """The next response of ``type_url`` on the raw stream (others are skipped)."""
    for _ in range(10):
        resp = await raw.recv()
        if resp.type_url == type_url:
            return resp
    raise AssertionError(f"no {type_url} response")


async def test_sidecar_uses_password_files_and_xds_carries_only_their_paths(
    file_stack: FileStack,
) -> None:
    """With ``sidecar_password_file`` for both directions, Envoy demands AUTH from clients
    (NOAUTH without it) and AUTHs upstream as 'app' with the file's password; a raw xDS
    client with a made-up node id reads CDS, LDS and EDS and finds no password bytes,
    only the two file paths."""
    pw, files, port = file_stack.passwords, file_stack.files, file_stack.listen.port
    assert _command(port, ("SET", "k", "v")) == ["error: NOAUTH Authentication required."]
    replies = _command(
        port, ("AUTH", pw["client"]), ("SET", "through-files", "1"), ("GET", "through-files")
    )
    assert replies == ["OK", "OK", "1"]
    with file_stack.primary.client() as c:
        assert "app" in {e.get("user") for e in c.client_list()}, "Envoy did not AUTH as app"
        assert c.get("through-files") == "1"

    raw = AdsClient(str(file_stack.control_plane.xds))
    try:
        await raw.send(CLUSTER, node_id="made-up-node")
        cds = await _response(raw, CLUSTER)
        await raw.send(LISTENER)
        lds = await _response(raw, LISTENER)
        cluster = Cluster.FromString(cds.resources[0].value)
        await raw.send(ENDPOINT, [cluster.eds_cluster_config.service_name])
        eds = await _response(raw, ENDPOINT)
    finally:
        await raw.close()
    wire = {"CDS": bytes(cds), "LDS": bytes(lds), "EDS": bytes(eds)}
    for name, data in wire.items():
        for which, value in pw.items():
            assert value.encode() not in data, f"{which} password in {name}"
    assert str(files["app"]).encode() in wire["CDS"]
    assert str(files["client"]).encode() in wire["LDS"]
    assert not file_stack.control_plane.events("xds.nack")


def _write_pair(host: Path, upstream: str, downstream: str) -> tuple[Path, Path]:
    return _write(host / "upstream.pass", upstream), _write(host / "downstream.pass", downstream)


@pytest.mark.parametrize("missing", ["upstream", "downstream"])
async def test_a_missing_password_file_is_a_listener_nack_naming_it(
    tmp_path: Path, started: list[Any], missing: str
) -> None:
    """Envoy cannot build the Listener when either file is missing (the redis_proxy filter
    reads the Cluster's upstream password too): it NACKs with ``Invalid path: <path>``,
    which the control plane records, and has no Redis listener; the Cluster is accepted."""
    up, down = _write_pair(tmp_path / "sidecar-host", _secret("up"), _secret("down"))
    gone = up if missing == "upstream" else down
    gone.unlink()
    listen = Address("127.0.0.1", free_port())
    cp = ProtocolLayer(config({GROUP: {"listen": str(listen)}}))
    spec = GroupSpec(
        GROUP,
        listen,
        Address("127.0.0.1", free_port()),
        upstream_auth=PasswordFile(str(up), "app"),
        downstream_auth=PasswordFile(str(down)),
    )
    cp.publish([spec])
    port = await serve(cp, started)
    proxy = await envoy(tmp_path, f"no-{missing}-file", port, started)

    def nacked() -> str | None:
        sc = cp.sidecar(f"no-{missing}-file")
        lds = sc.types.get(LISTENER) if sc is not None else None
        return lds.nack_detail if lds is not None and lds.state() is SyncState.NACKED else None

    detail = await until(nacked, "the Listener NACK")
    assert f"Invalid path: {gone}" in detail
    sc = cp.sidecar(f"no-{missing}-file")
    assert sc is not None and sc.types[CLUSTER].state() is SyncState.SYNCED
    assert proxy.alive and not proxy.listeners()
    assert proxy.stats().get("listener_manager.lds.update_rejected") == 1


def _reply(port: int, *commands: tuple[str, ...]) -> object:
    """The last reply of ``commands`` on one new connection; a lost connection
    (Envoy's upstream was just closed) is reported as None so callers poll again."""
    try:
        return _command(port, *commands)[-1]
    except ConnectionLost:
        return None


async def test_envoy_uses_file_bytes_as_they_are_and_rereads_only_the_upstream_file(
    tmp_path: Path, started: list[Any]
) -> None:
    """A trailing newline is part of the password (``echo pw > file`` breaks AUTH). The
    downstream file is read once, when the Listener is built; the upstream file at every
    new upstream connection, so an in-place rotation takes effect without any xDS push,
    once the upstream connection whose AUTH failed (Envoy keeps it) has been closed."""
    admin_pw, app_pw, client_pw = _secret("admin"), _secret("app"), _secret("client")
    redis = _password_redis(tmp_path, admin_pw, app_pw)
    up, down = _write_pair(tmp_path / "sidecar-host", app_pw, client_pw + "\n")
    listen = Address("127.0.0.1", free_port())
    cp = ProtocolLayer(config({GROUP: {"listen": str(listen)}}))
    cp.publish(
        [
            GroupSpec(
                GROUP,
                listen,
                redis.address,
                upstream_auth=PasswordFile(str(up), "app"),
                downstream_auth=PasswordFile(str(down)),
            )
        ]
    )
    port = await serve(cp, started)
    proxy = await envoy(tmp_path, "bytes-as-is", port, started)
    await until(lambda: proxy.listener_ready(listen.port), "the Redis listener")
    p = listen.port
    assert _command(p, ("AUTH", client_pw)) == ["error: ERR invalid password"]
    assert _command(p, ("AUTH", client_pw + "\n"), ("SET", "k", "1")) == ["OK", "OK"]

    _write(down, client_pw)  # fixed on disk, but the Listener was built from the old bytes
    assert _command(p, ("AUTH", client_pw)) == ["error: ERR invalid password"]

    def through(password: str) -> object:
        return _reply(p, ("AUTH", password), ("GET", "k"))

    with redis.client() as c:
        new_pw = _secret("app-rotated")
        c.execute_command("ACL", "SETUSER", "app", "resetpass", f">{new_pw}")
        _write(up, new_pw + "\n")  # a newline upstream: Redis refuses Envoy's AUTH
        c.execute_command("CLIENT", "KILL", "USER", "app")
        await until(
            lambda: through(client_pw + "\n") == "error: NOAUTH Authentication required.",
            "NOAUTH from Redis after a newline in the upstream file",
        )
        # Envoy keeps the connection whose AUTH failed (unauthenticated, so user "default"):
        # only a new upstream connection reads the fixed file
        assert through(client_pw + "\n") == "error: NOAUTH Authentication required."
        _write(up, new_pw)  # rotated in place: the next upstream connection reads it
        assert through(client_pw + "\n") == "error: NOAUTH Authentication required."
        c.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await until(lambda: through(client_pw + "\n") == "1", "GET with the rotated password")
        assert "app" in {e.get("user") for e in c.client_list()}
    assert proxy.alive
    stats = proxy.stats()
    assert stats.get("cluster_manager.cds.update_rejected") == 0
    assert stats.get("listener_manager.lds.update_success") == 1, "no Listener was re-sent"
