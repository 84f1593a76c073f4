"""What ``sentinel-xds bootstrap`` gives a production sidecar, checked with a real Envoy.

Three settings of the bootstrap matter only at scale, so each is checked here
against real Redis, Sentinel, control plane and Envoy processes:

* ``--stats-listen``: Prometheus scrapes redis_proxy counters on a port that
  serves ``/stats/prometheus`` and nothing else of the admin API;
* the stats matcher: the per-command latency histograms are never created, the
  counters docs/deploy.md and the tests read still are, and redis_proxy is never
  given a flush buffer;
* the ADS retry back-off: a sidecar whose control plane restarts after a
  failover it missed switches to the new primary within about a second.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.sidecar_reconnect import restart_until_switched
from redis_sentinel_watch import Address
from redis_sentinel_watch.blocking import command, connect
from tests.integration.conftest import GROUP
from xds.lab import EnvoyProcess, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane
from xds.resources.bootstrap import bootstrap_yaml

pytestmark = pytest.mark.integration

# never route these through an http_proxy from the environment
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class StatsSidecar:
    cluster: SentinelCluster
    control_plane: ControlPlane
    envoy: EnvoyProcess
    listen: Address
    stats: Address


def _start_sidecar(
    cp: ControlPlane, workdir: Path, listen: Address, stats_listen: Address | None = None
) -> EnvoyProcess:
    admin = Address("127.0.0.1", free_port())
    boot = bootstrap_yaml("sidecar-1", [cp.xds], admin=admin, stats_listen=stats_listen)
    envoy = EnvoyProcess.start(workdir, boot, admin.port, "sidecar-1")
    try:
        envoy.wait_listener(listen.port, timeout=20)
    except BaseException:
        envoy.stop()
        raise
    return envoy


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[StatsSidecar]:
    """One primary/replica pair, three Sentinels, the control plane, and one sidecar
    bootstrapped with ``--stats-listen`` (per test: conftest stops every process after
    each test)."""
    workdir = tmp_path
    cluster = SentinelCluster.start(workdir, groups=(GROUP,))
    try:
        listen = Address("127.0.0.1", free_port())
        stats = Address("127.0.0.1", free_port())
        cp = ControlPlane.for_topology(workdir, cluster.sentinel_addresses, {GROUP: listen})
        cp.start()
        envoy = _start_sidecar(cp, workdir, listen, stats_listen=stats)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [cluster.current_primary(GROUP).address])
        yield StatsSidecar(cluster, cp, envoy, listen, stats)
    finally:
        cluster.stop()
        stop_all()


def _get(address: Address, path: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(f"http://{address}{path}", method=method)
    try:
        with _opener.open(request, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _send_commands(listen: Address, n: int) -> None:
    """``n`` SETs and ``n`` GETs through the sidecar, each answered as expected."""
    with connect(listen) as client:
        for i in range(n):
            assert command(client, "SET", f"stats-{i}", str(i))
            assert command(client, "GET", f"stats-{i}") == str(i)


def _prometheus_value(text: str, name: str, labels: str) -> int | None:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\d+)$", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def test_stats_listen_serves_redis_counters_and_nothing_else(sidecar: StatsSidecar) -> None:
    """Counters of commands sent through the sidecar are scraped on the stats port; every
    other admin path (or method) is a 404 there, and ``/quitquitquit`` stops nothing."""
    status, before_text = _get(sidecar.stats, "/stats/prometheus")
    assert status == 200
    labels = f'envoy_redis_prefix="{GROUP}"'
    before = _prometheus_value(before_text, "envoy_redis_command_set_success", labels) or 0
    _send_commands(sidecar.listen, 20)

    def scraped() -> int | None:
        code, text = _get(sidecar.stats, "/stats/prometheus")
        value = _prometheus_value(text, "envoy_redis_command_set_success", labels)
        return value if code == 200 and value is not None and value >= before + 20 else None

    assert wait_until(scraped, 10, what="SET counter on the stats port") == before + 20
    _, text = _get(sidecar.stats, "/stats/prometheus")
    assert (_prometheus_value(text, "envoy_redis_command_get_total", labels) or 0) >= 20
    assert _prometheus_value(text, "envoy_redis_command_set_error", labels) == 0
    assert _prometheus_value(text, "envoy_control_plane_connected_state", "") == 1
    _, used = _get(sidecar.stats, "/stats/prometheus?usedonly")  # query strings pass
    assert _prometheus_value(used, "envoy_redis_command_set_error", labels) is None

    for path in ("/quitquitquit", "/config_dump", "/stats", "/clusters", "/", "/ready"):
        for method in ("GET", "POST"):
            code, body = _get(sidecar.stats, path, method)
            assert code == 404, f"{method} {path} answered {code} on the stats port"
            assert "config" not in body.lower()
    assert _get(sidecar.stats, "/stats/prometheus", "POST")[0] == 404
    assert _get(sidecar.stats, "/stats/prometheus/../../quitquitquit", "POST")[0] == 404
    assert _get(sidecar.stats, "/x/../quitquitquit", "POST")[0] == 404

    # the admin itself still answers on its own loopback address, and Envoy still proxies
    assert sidecar.envoy.alive
    assert sidecar.envoy.ready_state() == "LIVE"
    _send_commands(sidecar.listen, 1)
    assert sidecar.envoy.alive


def test_latency_histograms_dropped_counters_kept(sidecar: StatsSidecar) -> None:
    """No per-command latency histogram exists; the counters the docs and tests use do;
    the served redis_proxy has no flush buffer (any flush timeout delays every command)."""
    _send_commands(sidecar.listen, 5)
    status, text = _get(sidecar.envoy.admin, "/stats")
    assert status == 200
    names = {line.split(":", 1)[0] for line in text.splitlines()}
    assert not [n for n in names if n.startswith("redis.") and n.endswith(".latency")]
    assert not [n for n in names if ".upstream_commands." in n]
    _, histograms = _get(sidecar.envoy.admin, "/stats?type=Histograms")
    assert "latency" not in histograms and "upstream_commands" not in histograms

    counters = sidecar.envoy.stats()
    for name in (
        f"redis.{GROUP}.command.set.total",
        f"redis.{GROUP}.command.set.success",
        f"redis.{GROUP}.command.get.total",
        f"redis.{GROUP}.command.hmset.error",  # docs/deploy.md: watch command.*.error
        f"redis.{GROUP}.downstream_cx_total",
        f"redis.{GROUP}.downstream_cx_active",
        f"cluster.redis/{GROUP}.upstream_cx_total",
        f"cluster.redis/{GROUP}.upstream_rq_total",
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_rejected",
        "listener_manager.lds.update_success",
        "control_plane.connected_state",
    ):
        assert name in counters, name
    assert counters[f"redis.{GROUP}.command.set.success"] >= 5

    dump = json.dumps(sidecar.envoy.config_dump())
    assert "RedisProxy" in dump and "op_timeout" in dump  # snake_case, as Envoy prints it
    assert "buffer_flush_timeout" not in dump and "max_buffer_size_before_flush" not in dump


def _ads_retry_back_off(envoy: EnvoyProcess) -> dict[str, str]:
    """The ADS gRPC service's retry back-off as Envoy loaded it from the bootstrap."""
    for config in envoy.config_dump()["configs"]:
        if config.get("@type", "").endswith("BootstrapConfigDump"):
            ads = config["bootstrap"]["dynamic_resources"]["ads_config"]
            policy = ads["grpc_services"][0]["envoy_grpc"]["retry_policy"]
            return dict(policy["retry_back_off"])
    raise AssertionError("no bootstrap in /config_dump")


def _all_sentinels_name(cluster: SentinelCluster, primary: Address) -> bool:
    return all(s.master_addr(GROUP) == primary for s in cluster.sentinels)


def test_sidecar_back_within_a_second_of_control_plane_restart(tmp_path: Path) -> None:
    """The control plane is down during a failover (``kill -9`` of the primary); once it
    is restarted on the same port, the sidecar reconnects and switches to the new
    primary. What makes that quick is the ADS retry back-off in the bootstrap, which
    is asserted as Envoy loaded it; the time is printed, not asserted (its median over
    several runs is bench/sidecar_reconnect.py's, in docs/deploy.md)."""
    cluster = SentinelCluster.start(tmp_path, groups=(GROUP,))
    try:
        listen = Address("127.0.0.1", free_port())
        cp = ControlPlane.for_topology(tmp_path, cluster.sentinel_addresses, {GROUP: listen})
        cp.start()
        envoy = _start_sidecar(cp, tmp_path, listen)
        old = cluster.current_primary(GROUP)
        envoy.wait_cluster_hosts(f"redis/{GROUP}", [old.address])
        backoff = _ads_retry_back_off(envoy)
        assert (backoff["base_interval"], backoff["max_interval"]) == ("0.250s", "1s")

        cp.stop()
        wait_until(
            lambda: envoy.stats().get("control_plane.connected_state") == 0,
            10,
            what="the sidecar to notice its control plane is gone",
        )
        old.kill()
        new = cluster.wait_failover(GROUP, old.address)
        wait_until(
            lambda: _all_sentinels_name(cluster, new.address), 15, what="every Sentinel to agree"
        )
        assert envoy.cluster_hosts(f"redis/{GROUP}") == [old.address]  # nobody told it

        elapsed, after_ready = restart_until_switched(cp, envoy, new.address, timeout=30)
        print(
            f"\ncontrol plane restart -> sidecar on the new primary: {elapsed:.2f} s "
            f"({after_ready:.2f} s after the control plane was ready)"
        )
        _send_commands(listen, 1)  # and the data path goes to the new primary
        with new.client() as direct:
            assert command(direct, "GET", "stats-0") == "0"
    finally:
        cluster.stop()
        stop_all()
