"""The sidecar bootstrap's production settings: the stats-only listener, the ADS
reconnect back-off and the stats matcher (what Envoy does with them is checked
with a real Envoy in tests/integration/test_sidecar_bootstrap.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from envoy_data_plane.envoy.extensions.filters.network.redis_proxy.v3 import RedisProxy

from redis_sentinel_watch import Address
from xds.lab.envoy import find_envoy
from xds.ops.cli import main
from xds.resources.bootstrap import (
    ADS_RETRY_BACK_OFF,
    DROPPED_STATS,
    PROMETHEUS_PATH,
    STATS_ADMIN_CLUSTER,
    STATS_LISTENER,
    bootstrap_dict,
)
from xds.resources.redis_group import GroupSpec, build_listener

XDS = [Address("127.0.0.1", 18000)]
REPO = Path(__file__).resolve().parents[2]


def _seconds(duration: str) -> float:
    assert duration.endswith("s")
    return float(duration[:-1])


def test_ads_back_off_reconnects_within_a_second_without_hammering() -> None:
    """Envoy waits a random time below the current interval: a cap of 1 s puts a sidecar
    back within a second of a restart; a base of at least 0.1 s keeps a down control
    plane at a few connects per second per sidecar."""
    boot = bootstrap_dict("n", XDS)
    (grpc,) = boot["dynamic_resources"]["ads_config"]["grpc_services"]
    back_off = grpc["envoy_grpc"]["retry_policy"]["retry_back_off"]
    assert back_off == ADS_RETRY_BACK_OFF
    assert 0.1 <= _seconds(back_off["base_interval"]) <= _seconds(back_off["max_interval"]) <= 1


def test_no_stats_listener_unless_asked() -> None:
    """Without ``stats_listen`` only the xDS cluster is static; the admin stays alone."""
    boot = bootstrap_dict("n", XDS)
    assert "listeners" not in boot["static_resources"]
    assert [c["name"] for c in boot["static_resources"]["clusters"]] == ["sentinel_xds"]


def test_stats_listener_forwards_only_get_prometheus_to_the_admin() -> None:
    """One route to the admin cluster (exact path, GET only), everything else a 404."""
    admin = Address("127.0.0.1", 9911)
    boot = bootstrap_dict("n", XDS, admin=admin, stats_listen=Address("0.0.0.0", 9902))
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["name"] == STATS_LISTENER
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9902}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (vhost,) = hcm["route_config"]["virtual_hosts"]
    forward, rest = vhost["routes"]
    assert forward["match"]["path"] == PROMETHEUS_PATH == "/stats/prometheus"
    assert forward["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
    assert forward["route"]["cluster"] == STATS_ADMIN_CLUSTER
    assert rest["match"] == {"prefix": "/"} and rest["direct_response"]["status"] == 404
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    endpoint = clusters[STATS_ADMIN_CLUSTER]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint[0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9911,
    }
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_wildcard_admin_is_reached_on_loopback() -> None:
    boot = bootstrap_dict(
        "n", XDS, admin=Address("::", 9901), stats_listen=Address("127.0.0.1", 9902)
    )
    admin_cluster = boot["static_resources"]["clusters"][1]
    (ep,) = admin_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert ep["endpoint"]["address"]["socket_address"]["address"] == "::1"


@pytest.mark.parametrize(
    ("stats_listen", "listen", "message"),
    [
        (("stats.example", 9902), {}, "--stats-listen: 'stats.example' is a host name"),
        (("127.0.0.1", 9901), {}, "--stats-listen: 127.0.0.1:9901 is the admin address"),
        (("0.0.0.0", 9901), {}, "--stats-listen: 0.0.0.0:9901 is the admin address"),
        (("127.0.0.1", 0), {}, "--stats-listen: port 0"),
        (
            ("127.0.0.1", 6379),
            {"mymaster": Address("127.0.0.1", 6379)},
            "--stats-listen: 127.0.0.1:6379 is group mymaster's listener",
        ),
    ],
)
def test_bad_stats_listen_names_the_flag(
    stats_listen: tuple[str, int], listen: dict[str, Address], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        bootstrap_dict("n", XDS, stats_listen=Address(*stats_listen), listen=listen)


def test_stats_matcher_drops_only_the_latency_histograms() -> None:
    """The exclusions match the two histograms Envoy 1.40 creates, and none of the
    counters docs/deploy.md, the tests or an operator reads."""
    boot = bootstrap_dict("n", XDS)
    patterns = boot["stats_config"]["stats_matcher"]["exclusion_list"]["patterns"]
    assert [p["safe_regex"]["regex"] for p in patterns] == list(DROPPED_STATS)

    def dropped(name: str) -> bool:
        return any(re.search(p, name) for p in DROPPED_STATS)

    for histogram in (
        "redis.mymaster.command.get.latency",
        "redis.mymaster.command.bf.add.latency",
        "redis.my.group.command.set.latency",
        "cluster.redis/mymaster.redis_cluster.upstream_commands.upstream_rq_time",
    ):
        assert dropped(histogram), histogram
    for kept in (
        "redis.mymaster.command.get.total",
        "redis.mymaster.command.get.success",
        "redis.mymaster.command.hmset.error",
        "redis.mymaster.downstream_cx_total",
        "redis.mymaster.downstream_cx_active",
        "redis.mymaster.downstream_rq_total",
        "cluster.redis/mymaster.upstream_cx_total",
        "cluster.redis/mymaster.upstream_rq_total",
        "cluster.redis/mymaster.upstream_cx_connect_ms",
        "cluster.sentinel_xds.upstream_rq_time",
        "cluster_manager.cds.update_rejected",
        "listener_manager.lds.update_success",
        "control_plane.connected_state",
        "http.sidecar_stats.downstream_rq_time",
    ):
        assert not dropped(kept), kept


def test_redis_proxy_never_buffers() -> None:
    """No flush timeout or buffer size: any non-zero flush timeout delayed each command."""
    listener = build_listener(GroupSpec("g", Address("127.0.0.1", 6379), None))
    proxy = listener.filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(proxy, RedisProxy)
    assert proxy.settings is not None
    assert proxy.settings.buffer_flush_timeout is None
    assert not proxy.settings.max_buffer_size_before_flush


def test_cli_stats_listen_and_a_bad_value(capsys: pytest.CaptureFixture[str]) -> None:
    """``--stats-listen`` lands in the YAML; a clash is one line naming the flag, exit 2."""
    argv = ["bootstrap", "--node-id", "n", "--xds", "127.0.0.1:18000"]
    assert main([*argv, "--stats-listen", "127.0.0.1:9902"]) == 0
    boot = yaml.safe_load(capsys.readouterr().out)
    assert boot["static_resources"]["listeners"][0]["name"] == STATS_LISTENER
    assert main([*argv, "--stats-listen", "127.0.0.1:9901"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stats-listen" in err


def test_example_bootstrap_is_what_the_cli_prints(tmp_path: Path) -> None:
    """envoy/sidecar-bootstrap.yaml is regenerated with the command envoy/README.md gives,
    and Envoy accepts it (``--mode validate``)."""
    readme = (REPO / "envoy" / "README.md").read_text()
    found = re.search(r"`sentinel-xds (bootstrap [^`]+)`", readme)
    assert found, "envoy/README.md no longer names the command"
    out = tmp_path / "b.yaml"
    assert main([*found.group(1).split(), "-o", str(out)]) == 0
    example = REPO / "envoy" / "sidecar-bootstrap.yaml"
    assert out.read_text() == example.read_text()
    validate = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(example), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
