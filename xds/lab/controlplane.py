"""Run ``sentinel-xds serve`` as a real child process, the way operators run it.

Integration tests and the demo need to kill, restart and read the control plane
exactly as systemd would, so it runs as its own process with its own config
file; its admin ``/status`` is the way to look inside.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from redis_sentinel_watch import Address
from xds.lab.envoy import EnvoyProcess
from xds.lab.ports import free_port
from xds.lab.process import ManagedProcess, wait_until
from xds.resources.bootstrap import bootstrap_yaml
from xds.resources.redis_group import DEFAULT_OP_TIMEOUT_MS
from xds.service.admin_documents import StatusDocument

__all__ = ["ControlPlane", "config_yaml"]


def config_yaml(
    sentinels: Sequence[Address],
    groups: dict[str, Address],
    xds: Address,
    admin: Address,
    poll_interval_s: float = 0.5,
    op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS,
) -> str:
    """A config file for the lab topology (JSON logs, fast polling)."""
    data = {
        "sentinels": [str(s) for s in sentinels],
        "groups": {
            name: {"listen": str(listen), "op_timeout_ms": op_timeout_ms}
            for name, listen in groups.items()
        },
        "xds": {"listen": str(xds)},
        "admin": {"listen": str(admin)},
        "watch": {"poll_interval_s": poll_interval_s},
        "log": {"format": "json", "level": "info"},
    }
    return yaml.safe_dump(data, sort_keys=False)


class ControlPlane:
    """One ``sentinel-xds serve`` child with its config in ``<workdir>/<name>/``."""

    def __init__(
        self,
        workdir: Path,
        config_text: str,
        xds: Address,
        admin: Address,
        name: str = "sentinel-xds",
    ) -> None:
        self.directory = workdir.resolve() / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = self.directory / "config.yaml"
        self.config_path.write_text(config_text)
        self.xds = xds
        self.admin = admin
        self.name = name
        self.process: ManagedProcess | None = None

    @classmethod
    def for_topology(
        cls,
        workdir: Path,
        sentinels: Sequence[Address],
        groups: dict[str, Address],
        name: str = "sentinel-xds",
        xds_port: int | None = None,
        op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS,
    ) -> ControlPlane:
        xds = Address("127.0.0.1", xds_port or free_port())
        admin = Address("127.0.0.1", free_port())
        text = config_yaml(sentinels, groups, xds, admin, op_timeout_ms=op_timeout_ms)
        return cls(workdir, text, xds, admin, name)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> ControlPlane:
        """Start the process and (by default) wait until ``/readyz`` says ready."""
        argv = [sys.executable, "-m", "xds.ops.cli", "serve", "--config", str(self.config_path)]
        self.process = ManagedProcess(argv, self.directory, name=self.name)
        try:
            if wait_ready:
                wait_until(
                    self.ready,
                    timeout,
                    interval=0.1,
                    what=f"{self.name} /readyz (log: {self.log_path})",
                )
        except BaseException:
            self.stop()
            raise
        return self

    def start_sidecar(
        self, workdir: Path, node_id: str, listen: Address, timeout: float = 20.0
    ) -> EnvoyProcess:
        """A real Envoy bootstrapped from ``sentinel-xds bootstrap`` against this control
        plane (admin on a free port), returned once its Redis listener on ``listen`` is up."""
        admin = Address("127.0.0.1", free_port())
        envoy = EnvoyProcess.start(
            workdir, bootstrap_yaml(node_id, [self.xds], admin=admin), admin.port, name=node_id
        )
        try:
            envoy.wait_listener(listen.port, timeout=timeout)
        except BaseException:
            envoy.stop()
            raise
        return envoy

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.admin}/readyz", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def status(self) -> StatusDocument:
        """``/status``, typed (AdminDocumentError names a field that does not match)."""
        with urllib.request.urlopen(f"http://{self.admin}/status", timeout=2) as resp:
            return StatusDocument.from_json(json.load(resp))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (optionally only those with ``event == name``)."""
        out: list[dict[str, Any]] = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                out.append(record)
        return out

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            self.process.stop(timeout)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive
