"""The lab itself: real Redis, Sentinel and Envoy processes start, behave, and go away.

Every other integration test and benchmark trusts ``xds.lab`` to start real
processes and, above all, to stop them; these tests pin that down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_sentinel_watch.model import Address
from xds.lab import (
    EnvoyProcess,
    ManagedProcess,
    RedisNode,
    SentinelCluster,
    free_port,
    live_processes,
    stop_all,
    wait_until,
)

pytestmark = pytest.mark.integration

GROUP = "mymaster"


def _pid_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its (new) parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Fail the test if it left a lab process running (and stop it anyway)."""
    before = {id(p) for p in live_processes()}
    yield
    leaked = [p for p in live_processes() if id(p) not in before]
    for proc in leaked:
        proc.stop()
    assert not leaked, f"test leaked lab processes: {leaked}"


def test_free_port_never_repeats_and_skips_redis_defaults() -> None:
    """free_port hands out distinct loopback ports and never 6379/26379."""
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert not {6379, 26379} & set(ports)


def test_wait_until_times_out_with_what() -> None:
    """wait_until returns the first truthy value, or raises TimeoutError naming what it awaited."""
    assert wait_until(lambda: 42, timeout=0.1) == 42
    with pytest.raises(TimeoutError, match=r"timed out after 0.2s waiting for the moon"):
        wait_until(lambda: False, timeout=0.2, what="the moon")


def test_redis_node_start_role_stop(tmp_path: Path) -> None:
    """A RedisNode answers as master, a replica of it as slave, and stop() leaves no process."""
    primary = RedisNode.start(tmp_path)
    try:
        replica = RedisNode.start(tmp_path, replica_of=primary.address)
        try:
            assert primary.address.host == "127.0.0.1"
            assert primary.role() == "master"
            replica.wait_replica_synced(timeout=10)
            assert replica.role() == "slave"
            with primary.client() as c:
                c.set("k", "v")
            with replica.client() as c:
                wait_until(lambda: c.get("k") == "v", 5, what="replicated key")
        finally:
            replica.stop()
    finally:
        primary.stop()
    for node in (primary, replica):
        assert not node.alive
        assert _pid_gone(node.process.pid)
    primary.stop()  # idempotent


def test_paused_process_still_stops_promptly(tmp_path: Path) -> None:
    """stop() on a SIGSTOPped process sends SIGCONT first, so SIGTERM works without a SIGKILL."""
    node = RedisNode.start(tmp_path)
    node.pause()
    assert node.alive
    assert not node.ping(timeout=0.2)
    node.stop(timeout=5)
    assert node.process.returncode == 0  # graceful exit, not -SIGKILL
    assert _pid_gone(node.process.pid)


def test_sentinel_cluster_agrees_on_primary(tmp_path: Path) -> None:
    """After start, every Sentinel names the initial primary and knows the replica and its peers."""
    with SentinelCluster.start(tmp_path, sentinels=3) as cluster:
        primary = cluster.primaries[GROUP]
        assert {s.master_addr(GROUP) for s in cluster.sentinels} == {primary.address}
        assert cluster.current_primary(GROUP) is primary
        replica = cluster.replicas[GROUP][0]
        for sentinel in cluster.sentinels:
            known = {Address(r["ip"], int(r["port"])) for r in sentinel.known_replicas(GROUP)}
            assert replica.address in known
            assert len(sentinel.known_sentinels(GROUP)) == 2
        procs = [n.process for n in cluster.nodes] + [s.process for s in cluster.sentinels]
    assert all(_pid_gone(p.pid) for p in procs)
    cluster.stop()  # idempotent


def test_kill_primary_fails_over_to_replica(tmp_path: Path) -> None:
    """SIGKILLing the primary makes the Sentinels promote the replica, which then says master."""
    with SentinelCluster.start(tmp_path, down_after_ms=1000) as cluster:
        old = cluster.current_primary(GROUP)
        replica = cluster.replicas[GROUP][0]
        old.kill()
        new = cluster.wait_failover(GROUP, old.address, timeout=30)
        assert new is replica
        assert new.role() == "master"
        assert all(s.master_addr(GROUP) == replica.address for s in cluster.sentinels)
        with new.client() as c:
            assert c.set("after-failover", "1")


def _static_redis_proxy_bootstrap(admin_port: int, listen_port: int, upstream: Address) -> str:
    return f"""
admin:
  address:
    socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}
static_resources:
  listeners:
  - name: redis_listener
    address:
      socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.redis_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
          stat_prefix: lab
          settings: {{op_timeout: 5s}}
          prefix_routes:
            catch_all_route: {{cluster: redis}}
  clusters:
  - name: redis
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: redis
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: {upstream.host}, port_value: {upstream.port}}}
"""


def test_envoy_static_redis_proxy_set_get(tmp_path: Path) -> None:
    """Envoy with a static redis_proxy bootstrap proxies SET/GET and lists the Redis host."""
    node = RedisNode.start(tmp_path)
    try:
        admin_port, listen_port = free_port(), free_port()
        bootstrap = _static_redis_proxy_bootstrap(admin_port, listen_port, node.address)
        envoy = EnvoyProcess.start(tmp_path, bootstrap, admin_port)
        try:
            envoy.wait_listener(listen_port, timeout=10)
            assert envoy.cluster_hosts("redis") == [node.address]
            assert envoy.cluster_hosts("nope") == []
            proxied = redis.Redis(
                host="127.0.0.1",
                port=listen_port,
                protocol=2,
                decode_responses=True,
                socket_timeout=5,
            )
            with proxied:
                assert proxied.set("through-envoy", "yes")
                assert proxied.get("through-envoy") == "yes"
            with node.client() as direct:
                assert direct.get("through-envoy") == "yes"
            stats = envoy.stats()
            assert stats["redis.lab.command.set.total"] >= 1
            assert stats["redis.lab.command.get.total"] >= 1
            assert "configs" in envoy.config_dump()
        finally:
            envoy.stop()
        assert _pid_gone(envoy.process.pid)
    finally:
        node.stop()


def test_stop_all_kills_leftovers(tmp_path: Path) -> None:
    """stop_all() stops every process still registered, including what they forked."""
    if live_processes():
        pytest.skip("other lab processes are live; stop_all() would stop them too")
    shell = ManagedProcess(
        ["sh", "-c", "sleep 600 & echo $!; wait"], tmp_path, name="leftover-shell"
    )
    node = RedisNode.start(tmp_path)
    child_pid = int(
        wait_until(
            lambda: shell.log_tail(1).strip() or None, 5, what="the shell to print its child pid"
        )
    )
    assert shell.alive and node.alive and not _pid_gone(child_pid)
    assert stop_all() == 2
    assert live_processes() == []
    assert _pid_gone(shell.pid) and _pid_gone(node.process.pid)
    # The orphaned grandchild got the signal too; whoever inherited it reaps it.
    wait_until(lambda: _pid_gone(child_pid), 5, what=f"forked child {child_pid} to die")
