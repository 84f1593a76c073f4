"""The watcher reaches TLS-only Sentinels and Redis nodes through the config's ``tls:`` section.

A real primary and replica (``port 0``, ``tls-port``, ``tls-replication yes``) and
three TLS-only Sentinels that talk to Redis and to each other over TLS, all with
certificates from a CA the test makes, and ``tls-auth-clients yes`` so every
client must present a certificate. The control plane's own :class:`Watcher` and
:class:`RedisSentinelIO` run in-process, built exactly as ``xds/service/app.py``
builds them from a :class:`~xds.service.config.Config` parsed from YAML text, so the
path under test is config ``tls:`` → :class:`TlsSettings` → redis-py SSL
options → a real TLS handshake with the client certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_sentinel_watch import (
    Address,
    PrimaryChange,
    RedisSentinelIO,
    TlsSettings,
    Topology,
)
from tests.certs import Pair, TestCA
from tests.integration.conftest import GROUP
from tests.support import wait_for
from xds.lab import RedisNode, SentinelCluster, SentinelNode, free_port, stop_all
from xds.service.app import build_watcher, sentinel_io
from xds.service.config import load_config_text

pytestmark = pytest.mark.integration

DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10000


@dataclass
class TlsLab:
    """The TLS-only cluster and the files a watcher needs to reach it."""

    cluster: SentinelCluster
    ca: TestCA
    client: Pair


def _tls_conf(port: int, server: Pair, peer: Pair, ca: TestCA) -> list[str]:
    """redis.conf lines for a TLS-only listener on ``port``.

    ``tls-client-cert-file`` is a separate client certificate because the servers
    demand one (``tls-auth-clients yes``) from each other too (replication,
    Sentinel links), and OpenSSL rejects a serverAuth-only certificate there.
    """
    return [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {server.cert}",
        f"tls-key-file {server.key}",
        f"tls-client-cert-file {peer.cert}",
        f"tls-client-key-file {peer.key}",
        f"tls-ca-cert-file {ca.cert_file}",
        "tls-auth-clients yes",
        "tls-replication yes",
    ]


def _client_options(ca: TestCA, client: Pair) -> dict[str, Any]:
    """What the lab's own sync clients (readiness, discovery polling) need."""
    return TlsSettings(str(ca.cert_file), str(client.cert), str(client.key)).client_options()


def start_tls_cluster(workdir: Path) -> TlsLab:
    """A primary, one replica and three Sentinels, all TLS-only; waits for discovery."""
    ca = TestCA(workdir / "certs")
    server = ca.issue("redis-server", server=True)
    peer = ca.issue("redis-peer", server=False)
    client = ca.issue("sentinel-xds", server=False)
    options = _client_options(ca, client)
    cluster = SentinelCluster(workdir, (GROUP,), 2, DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS)

    def redis(replica_of: Address | None = None) -> RedisNode:
        port = free_port()
        return RedisNode.start(
            workdir,
            port,
            replica_of,
            extra_conf=_tls_conf(port, server, peer, ca),
            client_options=options,
        )

    try:
        primary = cluster.primaries[GROUP] = redis()
        replica = redis(primary.address)
        cluster.replicas[GROUP] = [replica]
        replica.wait_replica_synced()
        for _ in range(3):
            port = free_port()
            cluster.sentinels.append(
                SentinelNode.start(
                    workdir,
                    port,
                    monitors=[(GROUP, primary.address)],
                    quorum=2,
                    down_after_ms=DOWN_AFTER_MS,
                    failover_timeout_ms=FAILOVER_TIMEOUT_MS,
                    extra_conf=_tls_conf(port, server, peer, ca),
                    client_options=options,
                )
            )
        cluster.wait_discovered(20)
    except BaseException:
        cluster.stop()
        raise
    return TlsLab(cluster, ca, client)


@pytest.fixture
def tls_lab(tmp_path: Path) -> Iterator[TlsLab]:
    lab = start_tls_cluster(tmp_path)
    try:
        yield lab
    finally:
        lab.cluster.stop()
        stop_all()


def config_text(sentinels: Sequence[Address], lab: TlsLab) -> str:
    """A sentinel-xds config whose ``tls:`` section points at the test CA and client cert."""
    data = {
        "sentinels": [str(s) for s in sentinels],
        "groups": {GROUP: {"listen": f"127.0.0.1:{free_port()}"}},
        "xds": {"listen": f"127.0.0.1:{free_port()}"},
        "watch": {"poll_interval_s": 0.2},
        "tls": {
            "ca_file": str(lab.ca.cert_file),
            "cert_file": str(lab.client.cert),
            "key_file": str(lab.client.key),
        },
    }
    return yaml.safe_dump(data, sort_keys=False)


async def test_watcher_follows_tls_sentinels_through_a_failover(tls_lab: TlsLab) -> None:
    """With the config's ``tls:`` settings the watcher reads every Sentinel and asks Redis
    ``ROLE`` over TLS, publishes the real primary, and after ``kill -9`` of the primary
    publishes the replica the Sentinels promoted. Plaintext, or TLS without the client
    certificate, reaches neither Sentinel nor Redis."""
    cluster = tls_lab.cluster
    primary = cluster.primaries[GROUP]
    replica = cluster.replicas[GROUP][0]
    config = load_config_text(config_text(cluster.sentinel_addresses, tls_lab))
    assert config.tls is not None and config.tls.cert_file == str(tls_lab.client.cert)
    sentinel = cluster.sentinel_addresses[0]

    plain = RedisSentinelIO(config.watch.sentinel_timeout_s)
    no_cert = RedisSentinelIO(
        config.watch.sentinel_timeout_s, tls=TlsSettings(ca_file=config.tls.ca_file)
    )
    try:
        for refused in (plain, no_cert):
            view = await refused.query(sentinel, [GROUP])
            assert not view.reachable, view
            assert await refused.role(primary.address) == ""
    finally:
        await plain.aclose()
        await no_cert.aclose()

    io = sentinel_io(config)
    view = await io.query(sentinel, [GROUP])
    assert view.reachable and view.error is None, view
    assert view.groups[GROUP].primary == primary.address
    assert view.groups[GROUP].replicas == (replica.address,)
    assert await io.role(primary.address) == "master"

    watcher = build_watcher(config, io)
    published: list[tuple[Topology, Sequence[PrimaryChange]]] = []
    watcher.subscribe(lambda topology, changes: published.append((topology, changes)))

    def primary_now() -> Address | None:
        return published[-1][0].primaries().get(GROUP) if published else None

    task = asyncio.create_task(watcher.run())
    try:
        await wait_for(lambda: primary_now() == primary.address, 10, "the TLS primary")
        assert watcher.reachable_sentinels == 3
        assert all(v.reachable and not v.tilt for v in watcher.views), watcher.views

        primary.kill()
        await wait_for(
            lambda: primary_now() == replica.address, 25, "the promoted replica over TLS"
        )
        changes = [c for _, cs in published for c in cs if c.old is not None]
        assert [(c.old, c.new) for c in changes][-1] == (primary.address, replica.address)
        assert await io.role(replica.address) == "master"  # the real node agrees
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await io.aclose()
