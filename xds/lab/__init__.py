"""Real Redis, Sentinel, Envoy, registry and control-plane processes on loopback for the demo
(:mod:`~xds.lab.demo`, ``sentinel-xds demo``), the tests and the benchmarks.

Everything here starts actual binaries on 127.0.0.1 with free ports, waits by
polling with deadlines, and guarantees the processes are stopped (context
managers, idempotent ``stop()``, and an :mod:`atexit` :func:`stop_all`). It
drives the control plane as an operator would, through its process and its
admin API (:mod:`xds.service.admin_documents`); it never runs it in-process.
"""

from xds.lab.cluster import SentinelCluster
from xds.lab.envoy import EnvoyNotFoundError, EnvoyProcess, find_envoy
from xds.lab.ports import free_port
from xds.lab.process import (
    ManagedProcess,
    install_sigterm_handler,
    live_processes,
    stop_all,
    wait_until,
)
from xds.lab.redis import RedisNode
from xds.lab.sentinel import SentinelNode
from xds.lab.server import LabStartError

__all__ = [
    "EnvoyNotFoundError",
    "EnvoyProcess",
    "LabStartError",
    "ManagedProcess",
    "RedisNode",
    "SentinelCluster",
    "SentinelNode",
    "find_envoy",
    "free_port",
    "install_sigterm_handler",
    "live_processes",
    "stop_all",
    "wait_until",
]
