"""Real Redis, Sentinel and Envoy processes on loopback for the demo, tests and benchmarks.

Everything here starts actual binaries on 127.0.0.1 with free ports, waits by
polling with deadlines, and guarantees the processes are stopped (context
managers, idempotent ``stop()``, and an :mod:`atexit` :func:`stop_all`).
"""

from xds.lab.envoy import EnvoyNotFoundError, EnvoyProcess, find_envoy
from xds.lab.ports import free_port
from xds.lab.process import (
    ManagedProcess,
    install_sigterm_handler,
    live_processes,
    stop_all,
    wait_until,
)
from xds.lab.redis import LabStartError, RedisNode, SentinelCluster, SentinelNode

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
