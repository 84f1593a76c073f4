"""The registry scenario, for real: docker-registry replicas keep serving through Redis events.

Two Debian ``docker-registry`` (distribution 2.8.2) replicas share filesystem
storage and an upload secret, and keep their blob-descriptor cache in Redis
through their own Envoy sidecar (bootstrap from ``sentinel-xds bootstrap``),
configured as ``envoy/docker-registry.yml`` says: ``redis.addr`` and
``health.tcp`` at the sidecar, ``db: 0``. Behind the sidecars: a Redis primary
and replica, three Sentinels and the control plane. A third registry is set up
the old way (``redis.addr`` and ``health.tcp`` at the primary itself) as a
control: it must go unhealthy when the primary dies, proving the health polling
can see what the sidecar prevents.

While a client pushes and pulls images through both replicas without pause, the
test (a) kills the primary, (c) restarts it (Sentinel turns it into a replica)
and (b) drains the new primary with ``sentinel-xds drain`` (the drain needs a
replica to hand over to, hence this order). Observed from outside: every
registry HTTP request succeeds, ``/debug/health`` is 200 at every poll, the
cache entries of images pushed after each switch are on the new primary, and no
registry write was applied by a node that was no longer the primary.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from redis_sentinel_watch import Address
from tests.integration.conftest import GROUP
from tests.integration.registry_observers import (
    HealthPoller,
    NodeSampler,
    PushedImage,
    Traffic,
)
from xds.lab import EnvoyProcess, RedisNode, SentinelCluster, free_port, wait_until
from xds.lab.controlplane import ControlPlane
from xds.lab.registry import RegistryProcess
from xds.lab.registry_api import RegistryClient, RequestLog

pytestmark = pytest.mark.integration

UPLOAD_SECRET = "lab-upload-secret-shared-by-replicas"  # noqa: S105 - a test fixture
IMAGES_PER_PHASE = 4


@dataclass
class Sidecar:
    envoy: EnvoyProcess
    listen: Address


@dataclass
class RegistryStack:
    workdir: Path
    cluster: SentinelCluster
    control_plane: ControlPlane
    sidecars: list[Sidecar]
    registries: list[RegistryProcess]
    direct: RegistryProcess  # the old setup: cache and health check at the primary itself

    def stop(self) -> None:
        for registry in [*self.registries, self.direct]:
            registry.stop()
        for sidecar in self.sidecars:
            sidecar.envoy.stop()
        self.control_plane.stop()
        self.cluster.stop()


def sidecar_bootstrap(
    workdir: Path, name: str, cp: ControlPlane, admin: Address, listen: Address | None
) -> str:
    """Run ``sentinel-xds bootstrap`` as an operator would; ``listen`` overrides the group's."""
    out = workdir / f"{name}.bootstrap.yaml"
    argv = [
        sys.executable,
        "-m",
        "xds.ops.cli",
        "bootstrap",
        "--node-id",
        name,
        "--node-cluster",
        "docker-registry",
        "--xds",
        str(cp.xds),
        "--admin",
        str(admin),
        "-o",
        str(out),
    ]
    if listen is not None:
        argv += ["--listen", f"{GROUP}={listen}"]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    return out.read_text()


def start_registry_stack(workdir: Path) -> RegistryStack:
    cluster = SentinelCluster.start(workdir, groups=(GROUP,))
    sidecars: list[Sidecar] = []
    registries: list[RegistryProcess] = []
    cp: ControlPlane | None = None
    try:
        group_listen = Address("127.0.0.1", free_port())
        cp = ControlPlane.for_topology(
            workdir, cluster.sentinel_addresses, {GROUP: group_listen}
        ).start()
        primary = cluster.current_primary(GROUP).address
        # registry-1's sidecar listens where the group says; registry-2's shares the
        # machine, so its bootstrap moves it to another port (--listen).
        for i, override in ((1, None), (2, Address("127.0.0.1", free_port()))):
            admin = Address("127.0.0.1", free_port())
            text = sidecar_bootstrap(workdir, f"registry-{i}", cp, admin, override)
            envoy = EnvoyProcess.start(workdir, text, admin.port, name=f"sidecar-{i}")
            listen = override or group_listen
            sidecars.append(Sidecar(envoy, listen))
            envoy.wait_listener(listen.port, timeout=20)
            envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary])
        storage = workdir / "storage"
        for i, sidecar in enumerate(sidecars, start=1):
            registries.append(
                RegistryProcess.start(
                    workdir,
                    redis=sidecar.listen,
                    storage_root=storage,
                    secret=UPLOAD_SECRET,
                    name=f"registry-{i}",
                )
            )
        direct = RegistryProcess.start(
            workdir,
            redis=primary,
            storage_root=storage,
            secret=UPLOAD_SECRET,
            name="registry-direct",
        )
    except BaseException:
        for registry in registries:
            registry.stop()
        for sidecar in sidecars:
            sidecar.envoy.stop()
        if cp is not None:
            cp.stop()
        cluster.stop()
        raise
    return RegistryStack(workdir, cluster, cp, sidecars, registries, direct)


@pytest.fixture
def registry_stack(tmp_path: Path) -> Iterator[RegistryStack]:
    stack = start_registry_stack(tmp_path)
    try:
        yield stack
    finally:
        stack.stop()


# --- what the test waits for and checks ---------------------------------------------


def wait_sidecars_on(stack: RegistryStack, primary: Address, timeout: float = 20.0) -> float:
    """Wait until every sidecar routes to ``primary`` only; return when that was seen."""
    for sidecar in stack.sidecars:
        sidecar.envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary], timeout=timeout)
    return time.monotonic()


def wait_sentinels_see_replica(cluster: SentinelCluster, replica: Address) -> None:
    """Wait until every Sentinel lists ``replica`` as a healthy replica (a drain needs one)."""

    def healthy(entry: dict[str, str]) -> bool:
        flags = entry.get("flags", "")
        return (
            Address(entry.get("ip", ""), int(entry.get("port", "0"))) == replica
            and "s_down" not in flags
            and "disconnected" not in flags
            and entry.get("master-link-status") == "ok"  # what a drain checks first
        )

    wait_until(
        lambda: all(any(map(healthy, s.known_replicas(GROUP))) for s in cluster.sentinels),
        30,
        interval=0.1,
        what=f"every Sentinel to list {replica} as a healthy replica",
        ignore=(OSError, ValueError),
    )


def wait_images(traffic: Traffic, since: float, count: int, what: str) -> list[PushedImage]:
    """Wait until ``count`` images pushed after ``since`` were pulled back; return them."""
    return wait_until(
        lambda: images if len(images := traffic.pushed_since(since)) >= count else None,
        30,
        interval=0.05,
        what=f"{count} images pushed and pulled {what}",
    )


def cache_keys(image: PushedImage) -> list[str]:
    """The keys distribution 2.8.2 writes for a pushed image (read off a live Redis).

    Per blob (config and layers): ``blobs::<digest>`` (global descriptor hash) and
    ``repository::<repo>::blobs::<digest>`` (per-repository descriptor hash); the
    manifest only gets ``blobs::<digest>``.
    """
    img = image.image
    keys = [f"blobs::{img.manifest_digest}"]
    for digest in img.blob_digests:
        keys += [f"blobs::{digest}", f"repository::{img.repo}::blobs::{digest}"]
    return keys


def missing_cache_entries(node: RedisNode, images: list[PushedImage]) -> list[str]:
    keys = [key for image in images for key in cache_keys(image)]
    with node.client() as client:
        if client.exists(*keys) == len(keys):
            return []
        return [key for key in keys if not client.exists(key)]


def sidecar_write_commands(sidecar: Sidecar) -> int:
    """Registry cache writes this sidecar proxied (Envoy's redis_proxy command stats)."""
    return sum(
        value
        for name, value in sidecar.envoy.stats().items()
        if name.startswith("redis.")
        and any(name.endswith(f".command.{cmd}.total") for cmd in ("sadd", "hsetnx", "hmset"))
    )


class Scenario:
    """The three events, with the observers running and a mark at each step."""

    def __init__(self, stack: RegistryStack) -> None:
        self.stack = stack
        self.log = RequestLog()
        clients = [RegistryClient(r.url, r.name, log=self.log) for r in stack.registries]
        self.traffic = Traffic(clients)
        self.health = HealthPoller([*stack.registries, stack.direct])
        self.sampler = NodeSampler(stack.cluster.nodes)
        self.a = stack.cluster.current_primary(GROUP)
        self.b = next(n for n in stack.cluster.nodes if n.address != self.a.address)
        self.marks: dict[str, float] = {}
        self.missing: dict[str, list[str]] = {}
        self.drain_output = ""

    def mark(self, name: str, at: float | None = None) -> float:
        self.marks[name] = time.monotonic() if at is None else at
        return self.marks[name]

    def images_since(self, since: float, what: str) -> list[PushedImage]:
        """Wait for :data:`IMAGES_PER_PHASE` images pushed and pulled after ``since``.

        If they never come, say why: usually registry requests failing (503s).
        """
        try:
            return wait_images(self.traffic, since, IMAGES_PER_PHASE, what)
        except TimeoutError as exc:
            failures = self.log.failures()
            raise AssertionError(
                f"{exc}; {len(failures)} registry requests failed, first: {failures[:2]}"
            ) from exc

    def start(self) -> None:
        for thread in (self.health, self.sampler, self.traffic):
            thread.start()
        self.images_since(self.mark("start"), "at the start")

    def stop(self) -> None:
        self.traffic.stop()
        self.health.stop()
        self.sampler.stop()

    def kill_primary(self) -> None:
        """(a) kill -9 the primary A: Sentinel promotes B and the sidecars follow."""
        self.mark("kill")
        self.a.kill()
        self.stack.cluster.wait_failover(GROUP, self.a.address, timeout=30)
        switched = self.mark("kill_switched", wait_sidecars_on(self.stack, self.b.address))
        images = self.images_since(switched, "after the failover")
        self.missing["kill"] = missing_cache_entries(self.b, images)

    def restart_old_primary(self) -> None:
        """(c) A comes back claiming master with an empty dataset; Sentinel demotes it."""
        self.mark("restart")
        self.a.restart()
        wait_until(
            lambda: self.a.role() == "slave", 30, what="restarted node demoted", ignore=(OSError,)
        )
        self.a.wait_replica_synced(timeout=30)
        synced = self.mark("restart_synced")
        wait_sentinels_see_replica(self.stack.cluster, self.a.address)
        self.images_since(synced, "after the rejoin")

    def drain_primary(self) -> None:
        """(b) ``sentinel-xds drain`` the primary B: a planned switchover back to A."""
        self.mark("drain")
        argv = [sys.executable, "-m", "xds.ops.cli", "drain", GROUP, str(self.b.address)]
        argv += ["--config", str(self.stack.control_plane.config_path)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        self.drain_output = done.stdout + done.stderr
        assert done.returncode == 0, f"drain failed ({done.returncode}):\n{self.drain_output}"
        self.mark("drain_done")
        switched = self.mark("drain_switched", wait_sidecars_on(self.stack, self.a.address))
        images = self.images_since(switched, "after the drain")
        self.missing["drain"] = missing_cache_entries(self.a, images)
        wait_until(
            lambda: self.b.role() == "slave", 30, what="drained node demoted", ignore=(OSError,)
        )
        self.b.wait_replica_synced(timeout=30)

    def served(self, start: str, end: str) -> int:
        """Successful registry requests that started and ended between two marks."""
        lo, hi = self.marks[start], self.marks[end]
        return sum(
            1
            for r in self.log.snapshot()
            if r.ok and lo <= r.started and r.started + r.seconds <= hi
        )

    def summary(self) -> str:
        t0 = self.marks["start"]
        requests = self.log.snapshot()
        direct_503 = [s for s in self.health.of(self.stack.direct.name) if s.status == 503]
        readonly = {
            str(n.address): max((x.readonly_errors for x in self.sampler.of(n.address)), default=0)
            for n in (self.a, self.b)
        }
        return (
            f"registry e2e: {len(requests)} requests ({len(self.log.failures())} failed), "
            f"{len(self.traffic.pushed)} images, {len(self.health.samples)} health polls "
            f"({len(direct_503)} x 503 on the control registry), {len(self.sampler.samples)} "
            f"INFO samples, READONLY refusals {readonly}; marks: "
            + ", ".join(f"{k} +{v - t0:.2f}s" for k, v in self.marks.items())
        )


@pytest.fixture
def scenario(registry_stack: RegistryStack) -> Iterator[Scenario]:
    s = Scenario(registry_stack)
    try:
        yield s
    finally:
        s.stop()


def test_registry_replicas_serve_through_kill_restart_and_drain(scenario: Scenario) -> None:
    """Zero failed registry requests and /debug/health 200 throughout a primary kill, its
    restart and a drain of the new primary; cache entries written after each switch are
    on the new primary, and no write is applied by a node that is no longer primary."""
    s = scenario
    s.start()
    s.kill_primary()
    s.restart_old_primary()
    s.drain_primary()
    s.stop()
    print("\n" + s.summary() + "\n" + s.drain_output)

    assert s.traffic.crashed is None, f"traffic thread crashed: {s.traffic.crashed!r}"
    failures = s.log.failures()
    assert failures == [], f"{len(failures)} registry requests failed, first: {failures[:3]}"
    # the registry kept serving *during* each event, not only before and after
    for start, end in (("kill", "kill_switched"), ("restart", "restart_synced")):
        assert s.served(start, end) > 0, f"no request completed between {start} and {end}"
    assert s.served("drain", "drain_switched") > 0
    # each replica really went through its own sidecar
    for sidecar in s.stack.sidecars:
        assert sidecar_write_commands(sidecar) > 0, f"{sidecar.envoy.name} carried no writes"

    assert_health(s)
    assert s.missing == {"kill": [], "drain": []}, (
        f"cache entries not on the new primary: {s.missing}"
    )
    assert_no_write_applied_off_primary(s)


def assert_health(s: Scenario) -> None:
    """/debug/health was 200 at every poll of the replicas behind sidecars, polls covered
    every event, and the control registry wired to the primary itself did go 503 (so the
    polling can see an unhealthy registry)."""
    for registry in s.stack.registries:
        samples = s.health.of(registry.name)
        bad = [x for x in samples if x.status != 200]
        assert samples and not bad, f"{registry.name} unhealthy: {bad[:3]}"
        for start, end in (("kill", "kill_switched"), ("drain", "drain_switched")):
            assert s.health.of(registry.name, s.marks[start], s.marks[end]), (start, end)
    direct = s.health.of(s.stack.direct.name, s.marks["kill"], s.marks["restart_synced"])
    assert any(x.status == 503 for x in direct), "the control registry never went unhealthy"


def assert_no_write_applied_off_primary(s: Scenario) -> None:
    """No registry write was applied by a node that was not the primary.

    * the restarted A claimed master with an empty dataset until Sentinel demoted
      it: its write counters stayed 0 until its replication link came up;
    * no node refused a write as a replica (READONLY) except, on B, at most the one
      write in flight when the drain paused writes (the traffic has one request in
      flight at a time); a refused write is not applied;
    * B applied nothing after A took over: its resync with A was partial (a node
      with even one write beyond the switch point needs a full resync).
    """
    pid_a = str(s.a.process.pid)
    restarted = [x for x in s.sampler.of(s.a.address, s.marks["restart"]) if x.process_id == pid_a]
    first_up = min(x.at for x in restarted if x.link_up)
    before_sync = [x for x in restarted if x.at < first_up]
    assert any(x.role == "master" for x in before_sync), "never saw A claim master after restart"
    assert max(x.writes for x in before_sync) == 0, "a write reached the restarted node"
    assert max(x.readonly_errors for x in restarted) == 0, "a write reached A as a replica"

    b_samples = s.sampler.of(s.b.address)
    b_before_drain = [x for x in b_samples if x.at < s.marks["drain"]]
    assert max(x.readonly_errors for x in b_before_drain) == 0
    assert max(x.readonly_errors for x in b_samples) <= 1

    stats = s.a.info("stats")
    assert stats.get("sync_full") == "0", f"B needed a full resync from A: {stats}"
    assert int(stats.get("sync_partial_ok", "0")) >= 1
