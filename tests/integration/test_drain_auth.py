"""``sentinel-xds drain --config`` on a password-protected deployment, with real processes.

Redis with ``requirepass`` and ACL users, Sentinels with ``requirepass`` that
authenticate to each other (``sentinel-pass``) and to Redis (``auth-pass``), the
control plane reading its credentials from 0600 files, and a real Envoy that
AUTHs upstream as an application user and demands AUTH from its clients. The
control plane's ACL users get exactly the rules docs/runbook.md lists (read from
it here), so the documented rules are the tested ones.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP
from tests.integration.writer import Writer
from xds.lab import RedisNode, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER = "sentinel-xds"


def documented_rules() -> tuple[str, str]:
    """(Redis rules, Sentinel rules) of the control-plane user, from docs/runbook.md."""
    found = re.findall(
        rf"^user {USER} on >PASSWORD (.+)$", (ROOT / "docs/runbook.md").read_text(), re.M
    )
    assert len(found) == 2, "docs/runbook.md should give one Redis and one Sentinel line"
    return found[0], found[1]


def secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value)  # no newline: Envoy reads a DataSource file byte for byte
    path.chmod(0o600)
    return path


class AuthLab:
    """Cluster with passwords and ACL users, plus a config file for the control plane."""

    def __init__(self, workdir: Path, redis_user: str = USER, redis_rules: str = "") -> None:
        self.pw = {
            k: f"{k}-{secrets.token_hex(12)}" for k in ("admin", "sentinel", "cp", "app", "client")
        }
        redis_doc, sentinel_doc = documented_rules()
        pw = self.pw
        self.cluster = SentinelCluster.start(
            workdir,
            groups=(GROUP,),
            redis_conf=[
                f"requirepass {pw['admin']}",
                f"masterauth {pw['admin']}",
                f"user {redis_user} on >{pw['cp']} {redis_rules or redis_doc}",
                f"user app on >{pw['app']} ~* &* +@all",
            ],
            redis_client_options={"password": pw["admin"]},
            sentinel_conf=[
                f"requirepass {pw['sentinel']}",
                f"sentinel sentinel-pass {pw['sentinel']}",
                f"user {USER} on >{pw['cp']} {sentinel_doc}",
            ],
            sentinel_group_conf=[f"sentinel auth-pass {{group}} {pw['admin']}"],
            sentinel_client_options={"password": pw["sentinel"]},
        )
        secret_dir = workdir / "secrets"
        secret_dir.mkdir(mode=0o700)
        cp_file = secret_file(secret_dir, "cp.pass", pw["cp"])
        self.listen = Address("127.0.0.1", free_port())
        self.xds, self.admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        config: dict[str, Any] = yaml.safe_load(
            config_yaml(self.cluster.sentinel_addresses, {GROUP: self.listen}, self.xds, self.admin)
        )
        config["sentinel_auth"] = {"username": USER, "password_file": str(cp_file)}
        config["redis_auth"] = {"username": redis_user, "password_file": str(cp_file)}
        group = config["groups"][GROUP]
        group["upstream_auth"] = {
            "username": "app",
            "sidecar_password_file": str(secret_file(secret_dir, "app.pass", pw["app"])),
        }
        group["downstream_auth"] = {
            "sidecar_password_file": str(secret_file(secret_dir, "client.pass", pw["client"]))
        }
        self.config_text = yaml.safe_dump(config)
        self.config_path = secret_file(workdir, "sentinel-xds.yaml", self.config_text)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xds.ops.cli", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def priority(self, node: RedisNode) -> int:
        with node.client() as c:
            return int(c.config_get("replica-priority")["replica-priority"])


def test_drain_without_client_pause_refuses_in_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """The documented Redis rules minus ``+client|pause``: drain exits 1 with one line
    naming it; replica-priority, roles, every Sentinel's primary and writes unchanged."""
    redis_doc, _ = documented_rules()
    assert "+client|pause" in redis_doc
    lab = AuthLab(tmp_path, "cp-nopause", redis_doc.replace(" +client|pause", ""))
    try:
        old = lab.cluster.current_primary(GROUP)
        replica = lab.cluster.replicas[GROUP][0]
        result = lab.cli("drain", GROUP, str(old.address))
        assert result.returncode == 1, result
        assert result.stdout.splitlines() == [
            f"drain refused: redis user 'cp-nopause' on {old.address} lacks client|pause"
        ], result
        assert (lab.priority(old), lab.priority(replica)) == (100, 100)
        assert (old.role(), replica.role()) == ("master", "slave")
        assert {s.master_addr(GROUP) for s in lab.cluster.sentinels} == {old.address}
        with old.client(socket_timeout=1) as c:  # not paused: a write answers at once
            assert c.set("after-refusal", "1")
    finally:
        lab.cluster.stop()
        stop_all()


def test_drain_and_undrain_with_passwords_lose_no_write(tmp_path: Path) -> None:
    """serve and drain both with the config's ACL users, a client AUTHed to a sidecar that
    AUTHs upstream: drain exits 0, 0 acknowledged writes lost, at most 1 failed command,
    the client's connection kept, Envoy on the new primary; then undrain works."""
    lab = AuthLab(tmp_path)
    writer: Writer | None = None
    try:
        cp = ControlPlane(tmp_path, lab.config_text, lab.xds, lab.admin).start()
        envoy = cp.start_sidecar(tmp_path, "sidecar-auth", lab.listen)
        old = lab.cluster.current_primary(GROUP)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [old.address])
        writer = Writer("127.0.0.1", lab.listen.port)
        assert writer.conn.command("AUTH", lab.pw["client"]) == "OK"
        writer.start()
        wait_until(lambda: len(writer.result.acked) >= 30, 10, what="writes before the drain")

        result = lab.cli("drain", GROUP, str(old.address))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "drained:" in result.stdout
        new = lab.cluster.current_primary(GROUP)
        assert new.address != old.address

        before = len(writer.result.acked)
        wait_until(lambda: writer.acked_since(before) >= 30, 10, what="writes after the drain")
        written = writer.stop()
        assert written.connection_lost is None, "the client's connection to the sidecar closed"
        assert len(written.errors) <= 1, written.errors
        with new.client() as c:
            present = [c.exists(k) for k in written.acked]
        assert present.count(0) == 0, f"{present.count(0)} acknowledged writes lost"
        assert envoy.cluster_hosts(f"redis/{GROUP}") == [new.address]
        print(f"\n{result.stdout.splitlines()[-1]}\nclient errors: {written.errors}")
        assert old.role() == "slave" and lab.priority(old) == 0

        result = lab.cli("undrain", GROUP, str(old.address))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "undrained" in result.stdout
        assert lab.priority(old) == 100
    finally:
        if writer is not None:
            writer.stop()  # idempotent: a failed assertion must not leave its thread running
        lab.cluster.stop()
        stop_all()
