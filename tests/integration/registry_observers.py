"""Background observers for the registry end-to-end test.

Three threads watch from outside while the test breaks Redis:

* :class:`Traffic` pushes images (config blob, layers, schema 2 manifest) through
  one registry replica and pulls them back through the other, without pause,
  recording every HTTP request (:mod:`xds.lab.registry_api`);
* :class:`HealthPoller` asks each replica's ``/debug/health`` every 50 ms;
* :class:`NodeSampler` takes an atomic ``INFO`` snapshot (role, replication link,
  command and error counters) of every Redis node every 25 ms, which is how the
  test sees whether a registry write reached a node that was not the primary.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from redis_sentinel_watch import Address
from xds.lab import RedisNode
from xds.lab.registry import RegistryProcess
from xds.lab.registry_api import Image, RegistryClient, RegistryError

#: Commands that change a Redis dataset; the registry's cache uses the first four
#: (SADD, HSET, HSETNX, HMSET); the rest are there so nothing slips through.
WRITE_COMMANDS = frozenset(
    {"sadd", "hset", "hsetnx", "hmset", "set", "del", "srem", "hdel", "expire", "unlink"}
)


@dataclass(frozen=True)
class PushedImage:
    """An image and the monotonic time its push started and its pull-back finished."""

    image: Image
    started: float
    finished: float


class Traffic(threading.Thread):
    """Push through replica ``n % 2`` and pull through the other, round after round.

    Every round's last layer is uploaded in chunks started on one replica and
    finished on the other (what a load balancer does to a client). A failed
    request is recorded in the clients' shared log and the round is abandoned;
    the loop goes on, so the test counts every failure rather than the first.
    """

    def __init__(self, clients: Sequence[RegistryClient], repos: int = 3) -> None:
        super().__init__(daemon=True, name="registry-traffic")
        self.clients = list(clients)
        self.repos = repos
        self.pushed: list[PushedImage] = []
        self.crashed: BaseException | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        n = 0
        try:
            while not self._stopping.is_set():
                n += 1
                pusher = self.clients[n % len(self.clients)]
                puller = self.clients[(n + 1) % len(self.clients)]
                started = time.monotonic()
                config = json.dumps(
                    {"architecture": "amd64", "os": "linux", "created_by": f"round {n}"}
                ).encode()
                layers = [os.urandom(2048), os.urandom(6000)]
                try:
                    image = pusher.push_image(
                        f"lab/app{n % self.repos}", f"v{n}", config, layers, other=puller
                    )
                    puller.pull_image(image)
                except RegistryError:
                    continue  # already in the request log
                with self._lock:
                    self.pushed.append(PushedImage(image, started, time.monotonic()))
        except BaseException as exc:  # a bug in the client, not a registry failure
            self.crashed = exc

    def pushed_since(self, since: float) -> list[PushedImage]:
        """Images whose push started at or after ``since`` (monotonic)."""
        with self._lock:
            return [p for p in self.pushed if p.started >= since]

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


@dataclass(frozen=True)
class HealthSample:
    at: float
    name: str
    status: int | None  # None: the debug server did not answer
    body: str


class HealthPoller(threading.Thread):
    """``GET /debug/health`` on every registry every ``interval`` seconds."""

    def __init__(self, registries: Sequence[RegistryProcess], interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="registry-health")
        self.registries = list(registries)
        self.interval = interval
        self.samples: list[HealthSample] = []
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            for registry in self.registries:
                now = time.monotonic()
                try:
                    status, body = registry.health()
                except OSError as exc:
                    status, body = None, str(exc)
                self.samples.append(HealthSample(now, registry.name, status, body.strip()))
            self._stopping.wait(self.interval)

    def of(self, name: str, start: float = 0.0, end: float = float("inf")) -> list[HealthSample]:
        return [s for s in self.samples if s.name == name and start <= s.at <= end]

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)


@dataclass(frozen=True)
class NodeSample:
    """One atomic ``INFO server replication commandstats errorstats`` of one node."""

    at: float
    address: Address
    process_id: str
    role: str
    link_up: bool  # replica whose link to its primary is up (always False on a primary)
    writes: int  # write commands executed or rejected, since this process started
    readonly_errors: int  # writes refused because the node is a replica


def _counter(info: dict[str, Any], key: str, field_name: str) -> int:
    entry = info.get(key)
    if isinstance(entry, dict):
        return int(entry.get(field_name, 0))
    return 0


def parse_node_sample(at: float, address: Address, info: dict[str, Any]) -> NodeSample:
    writes = sum(
        _counter(info, f"cmdstat_{cmd}", "calls")
        + _counter(info, f"cmdstat_{cmd}", "rejected_calls")
        for cmd in WRITE_COMMANDS
    )
    return NodeSample(
        at=at,
        address=address,
        process_id=str(info.get("process_id", "")),
        role=str(info.get("role", "")),
        link_up=info.get("master_link_status") == "up",
        writes=writes,
        readonly_errors=_counter(info, "errorstat_READONLY", "count"),
    )


class NodeSampler(threading.Thread):
    """Snapshot every node's role and write counters every ``interval`` seconds.

    One INFO call returns all sections at one instant, so "role was master and
    the write counter was N" is a consistent observation. A node that is down
    is simply not sampled; a restarted node has a new ``process_id`` and counters
    starting from zero.
    """

    def __init__(self, nodes: Sequence[RedisNode], interval: float = 0.025) -> None:
        super().__init__(daemon=True, name="redis-sampler")
        self.nodes = list(nodes)
        self.interval = interval
        self.samples: list[NodeSample] = []
        self._stopping = threading.Event()
        self._clients: dict[Address, redis.Redis] = {}

    def _sample(self, node: RedisNode) -> None:
        client = self._clients.get(node.address)
        if client is None:
            client = node.client(socket_timeout=0.5, socket_connect_timeout=0.5)
            self._clients[node.address] = client
        try:
            info = client.info("server", "replication", "commandstats", "errorstats")
        except (redis.RedisError, OSError):
            client.close()
            self._clients.pop(node.address, None)
            return
        self.samples.append(parse_node_sample(time.monotonic(), node.address, info))

    def run(self) -> None:
        while not self._stopping.is_set():
            for node in self.nodes:
                self._sample(node)
            self._stopping.wait(self.interval)
        for client in self._clients.values():
            client.close()

    def of(self, address: Address, start: float = 0.0) -> list[NodeSample]:
        return [s for s in self.samples if s.address == address and s.at >= start]

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)
