"""A real docker-registry (distribution 2.x) on loopback, configured the way an operator would.

sentinel-xds exists because a registry whose blob-descriptor cache lives in Redis
turned into a wall of 503s whenever that Redis failed over: its ``health.tcp``
check pointed at a Redis node, and a failing check makes *every* request 503.
The end-to-end test must therefore run the actual registry binary (Debian's
``docker-registry`` package, distribution 2.8.2) with a config file an operator
would write, and look at it from outside: its HTTP API v2 and ``/debug/health``.

:func:`registry_config` builds that config; :class:`RegistryProcess` writes it to
``<workdir>/<name>/config.yml``, starts ``docker-registry serve`` as a
:class:`~xds.lab.process.ManagedProcess` (so it never outlives the lab) and waits
until both the API and the debug server answer.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from redis_sentinel_watch.model import Address
from xds.lab.ports import free_port
from xds.lab.process import ManagedProcess, wait_until

__all__ = [
    "RegistryNotFoundError",
    "RegistryProcess",
    "RegistrySettings",
    "find_registry",
    "registry_config",
]

_BINARIES = ("docker-registry", "registry")  # Debian's name, then upstream's
_START_ATTEMPTS = 3
_HTTP_TIMEOUT = 2.0
# Never route lab HTTP calls through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryNotFoundError(FileNotFoundError):
    """No ``docker-registry`` (or ``registry``) binary on PATH or in /usr/bin."""


def find_registry() -> Path:
    """The registry binary: Debian's ``docker-registry``, else upstream's ``registry``."""
    for name in _BINARIES:
        found = shutil.which(name)
        if found:
            return Path(found)
        beside = Path("/usr/bin") / name  # PATH may be minimal (systemd, sudo)
        if beside.exists():
            return beside
    raise RegistryNotFoundError(
        "docker-registry not found on PATH or in /usr/bin; "
        "install Debian's 'docker-registry' package (apt-get install docker-registry)"
    )


@dataclass(frozen=True)
class RegistrySettings:
    """What differs between registry replicas in the lab; everything else is fixed.

    ``redis`` is where the blob-descriptor cache lives (the sidecar's listener in
    the deployment this project is for); ``health_tcp`` is what ``health.tcp``
    checks (the same sidecar address, unless a test reproduces the old setup that
    aimed it at a Redis node). Replicas behind one load balancer must share
    ``storage_root`` and ``secret``: an upload started on one replica is finished
    on another only if both can read its state.
    """

    http: Address
    debug: Address
    redis: Address
    storage_root: Path
    secret: str
    health_tcp: Address | None = None  # None: the redis address
    health_interval: str = "250ms"
    health_timeout: str = "1s"
    health_threshold: int = 1
    db: int = 0


def registry_config(settings: RegistrySettings, name: str = "registry") -> dict[str, Any]:
    """The registry config as an operator writes it for use behind the sidecar.

    Kept close to ``envoy/docker-registry.yml``: Redis blob-descriptor cache, the
    cache at the sidecar with ``db: 0``, a connection pool so the registry keeps a
    few long-lived connections, and ``health.tcp`` at the sidecar. The health
    interval is short so that a test sees any moment the check would fail.
    """
    health_addr = settings.health_tcp or settings.redis
    return {
        "version": 0.1,
        "log": {
            "level": "info",
            "formatter": "text",
            "fields": {"service": "registry", "replica": name},
        },
        "storage": {
            "cache": {"blobdescriptor": "redis"},
            "filesystem": {"rootdirectory": str(settings.storage_root)},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "redis": {
            "addr": str(settings.redis),
            "db": settings.db,
            "dialtimeout": "1s",
            "readtimeout": "3s",
            "writetimeout": "3s",
            "pool": {"maxidle": 4, "maxactive": 16, "idletimeout": "300s"},
        },
        "health": {
            "storagedriver": {"enabled": False},
            "tcp": [
                {
                    "addr": str(health_addr),
                    "timeout": settings.health_timeout,
                    "interval": settings.health_interval,
                    "threshold": settings.health_threshold,
                }
            ],
        },
        "http": {
            "addr": str(settings.http),
            "secret": settings.secret,
            "debug": {"addr": str(settings.debug)},
        },
    }


class _ExitedDuringStart(RuntimeError):
    pass


class RegistryProcess:
    """One ``docker-registry serve``; config and log in ``<workdir>/<name>/``."""

    def __init__(self, directory: Path, settings: RegistrySettings, name: str) -> None:
        self.directory = directory
        self.settings = settings
        self.name = name
        self.config_path = directory / "config.yml"
        self.config_path.write_text(
            yaml.safe_dump(registry_config(settings, name), sort_keys=False)
        )
        argv = [str(find_registry()), "serve", str(self.config_path)]
        self.process = ManagedProcess(argv, directory, name=name)

    def __repr__(self) -> str:
        return f"<RegistryProcess {self.name} {self.url} pid={self.process.pid}>"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        redis: Address,
        storage_root: Path,
        secret: str,
        name: str = "registry",
        health_tcp: Address | None = None,
        health_interval: str = "250ms",
        timeout: float = 20.0,
    ) -> RegistryProcess:
        """Start a registry on free loopback ports and wait until it serves ``/v2/``.

        A process that exits at once (a port taken between :func:`free_port` and
        bind) is retried on fresh ports; anything else that keeps it from
        answering raises RuntimeError with its log tail, after stopping it.
        """
        directory = workdir.resolve() / name
        directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            settings = RegistrySettings(
                http=Address("127.0.0.1", free_port()),
                debug=Address("127.0.0.1", free_port()),
                redis=redis,
                storage_root=storage_root,
                secret=secret,
                health_tcp=health_tcp,
                health_interval=health_interval,
            )
            registry = cls(directory, settings, name)
            try:
                registry._wait_ready(timeout)
            except _ExitedDuringStart:
                if attempt + 1 >= _START_ATTEMPTS:
                    raise RuntimeError(
                        f"{name} exited during start:\n{registry.log_tail()}"
                    ) from None
                continue
            return registry
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.process.alive:
                raise _ExitedDuringStart(self.name)
            return self.api_status() == 200 and self.health()[0] in (200, 503)

        try:
            wait_until(
                ready,
                timeout,
                what=f"{self.name} to serve /v2/ on {self.settings.http}",
                ignore=(OSError,),  # the debug server may come up a moment after the API
            )
        except TimeoutError as exc:
            tail = self.log_tail()
            self.process.stop()
            raise RuntimeError(f"{exc}; log tail:\n{tail}") from exc
        except BaseException:
            self.process.stop()
            raise

    @property
    def url(self) -> str:
        """Base URL of the HTTP API (``http://127.0.0.1:<port>``)."""
        return f"http://{self.settings.http}"

    @property
    def debug_url(self) -> str:
        return f"http://{self.settings.debug}"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def log_tail(self, n: int = 40) -> str:
        return self.process.log_tail(n)

    def _get(self, url: str) -> tuple[int, str]:
        try:
            with _opener.open(url, timeout=_HTTP_TIMEOUT) as resp:
                return int(resp.status), resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def api_status(self) -> int | None:
        """Status of ``GET /v2/``; None when nothing answers."""
        try:
            return self._get(f"{self.url}/v2/")[0]
        except OSError:
            return None

    def health(self) -> tuple[int, str]:
        """``GET /debug/health`` on the debug server: (status, body).

        200 with ``{}`` when every check passes; 503 with a JSON map of failing
        checks (e.g. ``{"127.0.0.1:6379": "connection to 127.0.0.1:6379 failed"}``)
        otherwise. Raises OSError when the debug server does not answer at all.
        """
        return self._get(f"{self.debug_url}/debug/health")

    def stop(self, timeout: float = 5.0) -> None:
        self.process.stop(timeout)

    @property
    def alive(self) -> bool:
        return self.process.alive
