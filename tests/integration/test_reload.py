"""SIGHUP, as systemd's ExecReload sends it, against the real processes.

Redis with ``requirepass`` under three Sentinels, ``sentinel-xds serve`` as a
process with mutual TLS on the xDS port and the Redis password in a file, and
a real Envoy connected with a client certificate. Then, with one SIGHUP, the
Redis password (on every node, in the Sentinels and in the file) and the xDS
certificate are rotated: the sidecar keeps its stream, a new handshake sees
the new certificate, and after every old connection is killed the control
plane still checks ``ROLE`` and follows a failover (so the new password did
reach its I/O). A broken reload (a key that does not match its certificate)
then changes nothing and is counted. Then, with two master groups under the
same Sentinels, SIGHUPs that add and remove a group reach a connected Envoy
without dropping its stream.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml
from cryptography import x509

from redis_sentinel_watch import Address
from tests.certs import SERVER_NAME, Pair, TestCA
from tests.integration.conftest import GROUP
from tests.integration.test_status_metrics import scrape
from xds.lab import EnvoyProcess, RedisNode, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.resources.bootstrap import XdsClientTls, bootstrap_yaml
from xds.service.admin_documents import SidecarState

pytestmark = pytest.mark.integration

NODE = "sidecar-reload"
OLD_PW, NEW_PW = (f"redis-{secrets.token_hex(8)}" for _ in range(2))


def _serial_of(pair: Pair) -> int:
    return x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number


def _served_serial(xds: Address, ca: TestCA, client: Pair) -> int:
    """A new TLS handshake with the xDS port: the serial of the certificate it presents."""
    ctx = ssl.create_default_context(cafile=str(ca.cert_file))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((xds.host, xds.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _reloads(cp: ControlPlane) -> dict[str, float]:
    """``sentinel_xds_config_reloads_total`` by result, from ``/metrics``."""
    return {
        dict(labels)["result"]: value
        for (name, labels), value in scrape(cp.admin).items()
        if name == "sentinel_xds_config_reloads_total"
    }


def _sidecar(cp: ControlPlane) -> SidecarState:
    (sidecar,) = [s for s in cp.status().sidecars if s.node_id == NODE]
    return sidecar


def _kill_control_plane_connections(node: RedisNode) -> None:
    """Every normal client but the Sentinels' (they name their links ``sentinel-…``)
    and this one."""
    with node.client() as c:
        me = c.client_id()
        for entry in c.client_list(_type="normal"):
            if entry["name"].startswith("sentinel-") or int(entry["id"]) == me:
                continue
            c.client_kill_filter(_id=entry["id"])


def _control_plane_checked_role(node: RedisNode) -> bool:
    with node.client() as c:
        return any(
            entry["cmd"] == "role" and not entry["name"].startswith("sentinel-")
            for entry in c.client_list(_type="normal")
        )


def _install(pair: Pair, cert: Path, key: Path) -> None:
    shutil.copyfile(pair.cert, cert)
    shutil.copyfile(pair.key, key)


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n")
    path.chmod(0o600)


@dataclass
class ReloadStack:
    ca: TestCA
    client: Pair
    cert: Path  # the paths xds.tls names; rotation writes new contents into them
    key: Path
    password_file: Path
    cluster: SentinelCluster
    control_plane: ControlPlane
    envoy: EnvoyProcess

    def sighup(self) -> None:
        assert self.control_plane.process is not None
        self.control_plane.process.send_signal(signal.SIGHUP)

    def served_serial(self) -> int:
        return _served_serial(self.control_plane.xds, self.ca, self.client)


@pytest.fixture
def reload_stack(tmp_path: Path) -> Iterator[ReloadStack]:
    """Redis with requirepass (OLD_PW, from a 0600 file), mutual TLS on the xDS port with
    the ``cp-first`` certificate, and one Envoy connected with a client certificate."""
    ca = TestCA(tmp_path / "ca")
    client = ca.issue(NODE, server=False)
    cert, key = tmp_path / "xds.pem", tmp_path / "xds.key"
    _install(ca.issue("cp-first", server=True), cert, key)
    password_file = tmp_path / "redis.pass"
    _write_secret(password_file, OLD_PW)
    cluster = SentinelCluster.start(
        tmp_path,
        groups=(GROUP,),
        redis_conf=[f"requirepass {OLD_PW}", f"masterauth {OLD_PW}"],
        redis_client_options={"password": OLD_PW},
        sentinel_group_conf=[f"sentinel auth-pass {{group}} {OLD_PW}"],
    )
    try:
        listen = Address("127.0.0.1", free_port())
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        config = yaml.safe_load(
            config_yaml(cluster.sentinel_addresses, {GROUP: listen}, xds, admin)
        )
        config["xds"]["tls"] = {
            "cert_file": str(cert),
            "key_file": str(key),
            "client_ca_file": str(ca.cert_file),
            "require_client_cert": True,
        }
        config["redis_auth"] = {"password_file": str(password_file)}
        cp = ControlPlane(tmp_path, yaml.safe_dump(config), xds, admin).start()
        envoy_admin = Address("127.0.0.1", free_port())
        tls = XdsClientTls(str(ca.cert_file), str(client.cert), str(client.key), SERVER_NAME)
        envoy = EnvoyProcess.start(
            tmp_path,
            bootstrap_yaml(NODE, [xds], admin=envoy_admin, tls=tls),
            envoy_admin.port,
            name=NODE,
        )
        primary = cluster.current_primary(GROUP)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary.address], timeout=20)
        yield ReloadStack(ca, client, cert, key, password_file, cluster, cp, envoy)
    finally:
        stop_all()
        cluster.stop()


def _rotate_redis_password(stack: ReloadStack, new: str) -> None:
    """On every node (requirepass and masterauth), in every Sentinel, in the file."""
    for node in stack.cluster.nodes:
        with node.client() as c:
            c.config_set("masterauth", new)
            c.config_set("requirepass", new)
        node.client_options["password"] = new
    for sentinel in stack.cluster.sentinels:
        with sentinel.client() as c:
            c.execute_command("SENTINEL", "SET", GROUP, "auth-pass", new)
    _write_secret(stack.password_file, new)


def test_sighup_rotates_redis_password_and_xds_certificate_while_envoy_stays(
    reload_stack: ReloadStack,
) -> None:
    stack, cp, envoy = reload_stack, reload_stack.control_plane, reload_stack.envoy
    stream = _sidecar(cp)
    first_serial = stack.served_serial()
    handshakes = envoy.stats()["cluster.sentinel_xds.ssl.handshake"]

    # --- rotate the Redis password and the certificate, then one SIGHUP
    _rotate_redis_password(stack, NEW_PW)
    second = stack.ca.issue("cp-second", server=True)
    _install(second, stack.cert, stack.key)
    stack.sighup()
    wait_until(lambda: _reloads(cp).get("success") == 1, 10, what="reload success")
    (reloaded,) = cp.events("config.reloaded")
    assert set(reloaded["changed"]) == {
        "redis_auth.password",
        "xds.tls.cert_file",
        "xds.tls.key_file",
    }

    # the sidecar kept its stream (and its TLS connection); a new handshake sees the new cert
    assert (_sidecar(cp).stream_id, _sidecar(cp).connected_since) == (
        stream.stream_id,
        stream.connected_since,
    )
    assert envoy.stats()["cluster.sentinel_xds.ssl.handshake"] == handshakes
    assert envoy.stats()["control_plane.connected_state"] == 1
    assert first_serial != _serial_of(second) == stack.served_serial()

    # the control plane's connections authenticated with the old password go: from here
    # on its ROLE checks and fence need the new one, and it follows a failover
    for node in stack.cluster.nodes:
        _kill_control_plane_connections(node)
    primary = stack.cluster.current_primary(GROUP)
    with stack.cluster.sentinels[0].client() as c:
        c.execute_command("SENTINEL", "FAILOVER", GROUP)
    new_primary = stack.cluster.wait_failover(GROUP, primary.address, timeout=20)
    wait_until(
        lambda: any(
            g.name == GROUP and g.primary == str(new_primary.address) and g.health == "ok"
            for g in cp.status().groups
        ),
        15,
        what="the control plane to follow the failover",
    )
    envoy.wait_cluster_hosts(f"redis/{GROUP}", [new_primary.address], timeout=10)
    # following it needs only the Sentinels; that the new password is *used* shows on the
    # promoted node: a connection of the control plane's whose last command was ROLE,
    # which only NEW_PW can have opened (requirepass is NEW_PW on every node)
    wait_until(
        lambda: _control_plane_checked_role(new_primary),
        10,
        what="a ROLE check by the control plane on the new primary",
    )
    assert not cp.events("config.reload_failed")

    # --- a broken reload (a key that is not the certificate's) changes nothing
    shutil.copyfile(stack.ca.issue("cp-stranger", server=True).key, stack.key)
    stack.sighup()
    wait_until(lambda: _reloads(cp).get("failure") == 1, 10, what="reload failure")
    (failed,) = cp.events("config.reload_failed")
    assert failed["field"] == "xds.tls.key_file"
    assert cp.alive and cp.ready()
    assert stack.served_serial() == _serial_of(second)
    assert _sidecar(cp).stream_id == stream.stream_id
    assert _reloads(cp) == {"success": 1.0, "failure": 1.0}
    log = cp.log_path.read_text()
    assert NEW_PW not in log and OLD_PW not in log


# --------------------------------------------------------------------------- a group added


GROUP_B = "second"


def _set_through(cluster: SentinelCluster, group: str, listen: Address, key: str) -> None:
    """A write through the sidecar's listener for ``group`` lands on that group's primary."""
    with redis.Redis(listen.host, listen.port, protocol=2, socket_timeout=5) as client:
        client.set(key, group)
    with cluster.current_primary(group).client() as direct:
        assert direct.get(key) in (group, group.encode())


def test_sighup_adds_and_removes_a_group_while_envoy_stays(tmp_path: Path) -> None:
    """Two master groups under the same three Sentinels; the control plane starts with
    the first only. A SIGHUP that adds the second brings a new watcher: the connected
    Envoy gets the second group's listener on the same stream, and the first group's
    listener serves on; a SIGHUP that removes the first makes Envoy drop its listener."""
    cluster = SentinelCluster.start(tmp_path, groups=(GROUP, GROUP_B))
    try:
        listen = {
            GROUP: Address("127.0.0.1", free_port()),
            GROUP_B: Address("127.0.0.1", free_port()),
        }
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        sentinels = cluster.sentinel_addresses
        cp = ControlPlane(
            tmp_path, config_yaml(sentinels, {GROUP: listen[GROUP]}, xds, admin), xds, admin
        ).start()
        envoy = cp.start_sidecar(tmp_path, NODE, listen[GROUP])
        (stream,) = cp.status().sidecars
        _set_through(cluster, GROUP, listen[GROUP], "before")

        cp.config_path.write_text(config_yaml(sentinels, listen, xds, admin))
        assert cp.process is not None
        cp.process.send_signal(signal.SIGHUP)
        wait_until(lambda: _reloads(cp).get("success") == 1, 15, what="reload success")
        (reloaded,) = cp.events("config.reloaded")
        assert reloaded["changed"] == [f"groups.{GROUP_B}"]
        envoy.wait_listener(listen[GROUP_B].port, timeout=15)
        envoy.wait_cluster_hosts(
            f"redis/{GROUP_B}", [cluster.current_primary(GROUP_B).address], timeout=10
        )
        _set_through(cluster, GROUP_B, listen[GROUP_B], "added")
        _set_through(cluster, GROUP, listen[GROUP], "kept")
        envoy.wait_cluster_hosts(
            f"redis/{GROUP}", [cluster.current_primary(GROUP).address], timeout=1
        )
        (now,) = cp.status().sidecars
        assert (now.stream_id, now.connected_since) == (stream.stream_id, stream.connected_since)
        assert {g.name for g in cp.status().groups} == {GROUP, GROUP_B}
        assert cp.alive and cp.ready() and not cp.events("service.watcher_died")

        cp.config_path.write_text(config_yaml(sentinels, {GROUP_B: listen[GROUP_B]}, xds, admin))
        cp.process.send_signal(signal.SIGHUP)
        wait_until(lambda: _reloads(cp).get("success") == 2, 15, what="second reload")
        wait_until(
            lambda: not envoy.listener_ready(listen[GROUP].port),
            15,
            what="envoy to drop the removed group's listener",
        )
        _set_through(cluster, GROUP_B, listen[GROUP_B], "still")
        (now,) = cp.status().sidecars
        assert now.stream_id == stream.stream_id
        assert [g.name for g in cp.status().groups] == [GROUP_B]
        assert not cp.events("config.reload_failed")
    finally:
        stop_all()
        cluster.stop()
