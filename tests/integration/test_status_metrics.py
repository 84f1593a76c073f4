"""``sentinel-xds status`` / ``events`` and ``/metrics`` against real processes.

A real Envoy rejects a real resource (its Listener's port is already bound by
another process on the host, so Envoy NACKs with its own error text), a raw
ADS client takes a Cluster and never ACKs it; ``status`` must say NACKED and
STALE for exactly those and exit 1. Then a real Sentinel failover must move the
Prometheus counters, change the primary info metric, and show up in ``events``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from redis_sentinel_watch import Address
from tests.adsclient import AdsClient
from tests.support import wait_for
from xds.ads.sidecars import SyncState
from xds.ads.snapshot import CLUSTER
from xds.lab import EnvoyProcess, SentinelCluster, free_port, wait_until
from xds.lab.controlplane import ControlPlane
from xds.lab.envoy import _opener
from xds.ops.admin_client import AdminClient
from xds.ops.cli import main
from xds.resources.bootstrap import bootstrap_yaml

pytestmark = pytest.mark.integration

GROUP = "mymaster"


def scrape(admin: Address) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by Prometheus' own text parser: (sample name, labels) → value."""
    with _opener.open(f"http://{admin}/metrics", timeout=2) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class Topology:
    def __init__(self, workdir: Path) -> None:
        self.cluster = SentinelCluster.start(workdir, groups=(GROUP,))
        self.listen = Address("127.0.0.1", free_port())
        # another process already holds the sidecar's Redis port: Envoy must NACK the Listener
        self.blocker = socket.socket()
        self.blocker.bind((self.listen.host, self.listen.port))
        self.blocker.listen()
        self.cp = ControlPlane.for_topology(
            workdir, self.cluster.sentinel_addresses, {GROUP: self.listen}
        ).start()
        admin = free_port()
        self.envoy = EnvoyProcess.start(
            workdir,
            bootstrap_yaml("sidecar-nack", [self.cp.xds], admin=Address("127.0.0.1", admin)),
            admin,
            name="sidecar-nack",
        )

    def stop(self) -> None:
        self.envoy.stop()
        self.cp.stop()
        self.cluster.stop()
        self.blocker.close()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    t = Topology(tmp_path)
    try:
        yield t
    finally:
        t.stop()


async def test_status_shows_nacked_and_stale_and_metrics_move_on_failover(
    topology: Topology, capsys: pytest.CaptureFixture[str]
) -> None:
    """status: NACKED (with Envoy's bind error) for the real Envoy's Listener, STALE for a
    raw client's unACKed Cluster, exit 1; after they are gone and a SENTINEL FAILOVER,
    /metrics (parsed by the Prometheus parser) shows more pushes and ACKs, a NACK, one
    sentinel-event failover, the new primary as info; events shows it ACKed 1/1."""
    admin = AdminClient(f"http://{topology.cp.admin}")
    await check_status_nacked_and_stale(topology, admin, capsys)
    await wait_for(lambda: admin.status().sidecar("stale-1") is None, 5, "stale-1 gone")
    check_metrics_and_events_across_failover(topology, admin, capsys)


async def check_status_nacked_and_stale(
    topology: Topology, admin: AdminClient, capsys: pytest.CaptureFixture[str]
) -> None:

    def nacked() -> bool:
        sc = admin.status().sidecar("sidecar-nack")
        lds = sc.type("Listener") if sc is not None else None
        return lds is not None and lds.state is SyncState.NACKED

    wait_until(nacked, 20, what="Envoy to NACK the Listener")
    raw = AdsClient(str(topology.cp.xds))
    try:
        await raw.send(CLUSTER, node_id="stale-1")
        await raw.recv()  # the Cluster arrives; it is never ACKed
        await wait_for(lambda: admin.status().sidecar("stale-1") is not None, 5, "stale-1 listed")

        capsys.readouterr()
        code = main(["status", "--admin", str(topology.cp.admin)])
        out = capsys.readouterr().out
        print(out)
        assert code == 1
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
        assert rows["stale-1"][4] == "STALE"  # CDS column
        assert rows["sidecar-nack"][4:7] == ["SYNCED", "SYNCED", "NACKED"]
        assert "sidecar stale-1 STALE on Cluster" in out
        assert (
            "sidecar sidecar-nack NACKED Listener version" in out
            and f"cannot bind '{topology.listen}': Address already in use" in out
        )
    finally:
        await raw.close()


def check_metrics_and_events_across_failover(
    topology: Topology, admin: AdminClient, capsys: pytest.CaptureFixture[str]
) -> None:
    before = scrape(topology.cp.admin)
    assert before[("sentinel_xds_nacks_total", (("type", "Listener"),))] >= 1
    assert before[("sentinel_xds_connected_sidecars", (("protocol", "sotw"),))] == 1
    for s in topology.cluster.sentinel_addresses:
        assert before[("sentinel_xds_sentinel_up", (("sentinel", str(s)),))] == 1
    old = topology.cluster.current_primary(GROUP).address
    assert before[("sentinel_xds_group_primary_info", (("group", GROUP), ("primary", str(old))))]

    with topology.cluster.sentinels[0].client() as c:
        c.execute_command("SENTINEL", "FAILOVER", GROUP)
    new = topology.cluster.wait_failover(GROUP, old, timeout=30).address
    topology.envoy.wait_cluster_hosts(f"redis/{GROUP}", [new], timeout=15)
    failovers = wait_until(lambda: admin.events(5), 35, what="failover.completed")

    after = scrape(topology.cp.admin)

    def grew(name: str, labels: tuple[tuple[str, str], ...]) -> bool:
        return after[(name, labels)] > before.get((name, labels), 0.0)

    for kind in ("Cluster", "ClusterLoadAssignment"):
        assert grew("sentinel_xds_pushes_total", (("type", kind),)), kind
        assert grew("sentinel_xds_acks_total", (("type", kind),)), kind
        assert grew("sentinel_xds_push_to_ack_seconds_count", (("type", kind),)), kind
    assert after[("sentinel_xds_failovers_total", (("trigger", "sentinel-event"),))] == 1
    assert after[("sentinel_xds_failovers_total", (("trigger", "drain"),))] == 0
    assert after[("sentinel_xds_group_primary_info", (("group", GROUP), ("primary", str(new))))]
    assert ("sentinel_xds_group_primary_info", (("group", GROUP), ("primary", str(old)))) not in (
        after
    )

    assert [(f.old, f.new, f.trigger) for f in failovers] == [
        (str(old), str(new), "sentinel-event")
    ]
    assert (failovers[0].acked, failovers[0].sidecars) == (1, 1)
    capsys.readouterr()
    assert main(["events", "--admin", str(topology.cp.admin), "-n", "3"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert f"{old} -> {new}" in out and "sentinel-event" in out and "1/1" in out
