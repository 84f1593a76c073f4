"""Fixtures that start real Redis, Sentinel, sentinel-xds and Envoy processes on loopback.

Every fixture stops what it started, pass or fail; a final autouse fixture calls
the lab's ``stop_all`` so nothing outlives a test even if a fixture broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from xds.lab import EnvoyProcess, SentinelCluster, free_port, stop_all
from xds.lab.controlplane import ControlPlane

GROUP = "mymaster"


@dataclass
class Stack:
    """The whole path: Sentinels over a primary/replica, the control plane, one sidecar."""

    workdir: Path
    cluster: SentinelCluster
    control_plane: ControlPlane
    envoy: EnvoyProcess
    listen: Address

    def primary_address(self) -> Address:
        return self.cluster.current_primary(GROUP).address

    def envoy_hosts(self) -> list[Address]:
        return self.envoy.cluster_hosts(f"redis/{GROUP}")


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    stop_all()


def start_stack(
    workdir: Path, op_timeout_ms: int = 5000, *, failover_timeout_ms: int = 10000
) -> Stack:
    cluster = SentinelCluster.start(
        workdir, groups=(GROUP,), failover_timeout_ms=failover_timeout_ms
    )
    try:
        listen = Address("127.0.0.1", free_port())
        cp = ControlPlane.for_topology(
            workdir, cluster.sentinel_addresses, {GROUP: listen}, op_timeout_ms=op_timeout_ms
        ).start()
        envoy = cp.start_sidecar(workdir, "sidecar-1", listen)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [cluster.current_primary(GROUP).address])
    except BaseException:
        cluster.stop()
        stop_all()
        raise
    return Stack(workdir, cluster, cp, envoy, listen)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path)
    try:
        yield s
    finally:
        s.envoy.stop()
        s.control_plane.stop()
        s.cluster.stop()
