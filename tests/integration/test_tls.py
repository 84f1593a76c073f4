"""TLS and mutual TLS on the xDS listener, the sidecar bootstrap's TLS flags, and the admin
endpoint's loopback default.

The control plane runs as a real process with ``xds.tls`` (mutual TLS), its
certificates from a CA the test makes; a real Envoy with a client certificate
gets its config and routes Redis commands, while raw gRPC clients without a
certificate, with one from another CA, or in plaintext are refused before any
stream exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
import yaml
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse

from redis_sentinel_watch import Address, FakeSentinelIO
from redis_sentinel_watch.auth import Secret
from tests.certs import SERVER_NAME, Pair, TestCA
from tests.component.conftest import A, snap
from tests.integration.conftest import GROUP
from tests.resp import OneConnection
from xds.ads.cache import SnapshotCache
from xds.ads.server import XdsServer
from xds.ads.sidecars import Sidecars
from xds.ads.snapshot import CLUSTER
from xds.lab import EnvoyProcess, SentinelCluster, free_port, stop_all, wait_until
from xds.lab.controlplane import ControlPlane, config_yaml
from xds.ops.cli import main
from xds.resources.bootstrap import XdsClientTls, bootstrap_dict, bootstrap_yaml
from xds.service.admin_documents import StatusDocument
from xds.service.admin_http import AdminServer
from xds.service.app import Service
from xds.service.config import ConfigError, load_config_text
from xds.service.tls import ServerTls, server_credentials, transport_warning

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
NODE = "sidecar-mtls"


@dataclass
class Certs:
    ca: TestCA
    server: Pair
    client: Pair
    rogue_client: Pair


@dataclass
class MtlsStack:
    certs: Certs
    cluster: SentinelCluster
    control_plane: ControlPlane
    envoy: EnvoyProcess
    listen: Address


def make_certs(directory: Path) -> Certs:
    ca = TestCA(directory / "ca")
    rogue = TestCA(directory / "rogue", name="rogue CA")
    return Certs(
        ca=ca,
        server=ca.issue("control-plane", server=True),
        client=ca.issue(NODE, server=False),
        rogue_client=rogue.issue("intruder", server=False),
    )


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[MtlsStack]:
    workdir = tmp_path
    certs = make_certs(workdir / "certs")
    cluster = SentinelCluster.start(workdir, groups=(GROUP,))
    try:
        listen = Address("127.0.0.1", free_port())
        xds, admin = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
        config = yaml.safe_load(
            config_yaml(cluster.sentinel_addresses, {GROUP: listen}, xds, admin)
        )
        config["xds"]["tls"] = {
            "cert_file": str(certs.server.cert),
            "key_file": str(certs.server.key),
            "client_ca_file": str(certs.ca.cert_file),
            "require_client_cert": True,
        }
        cp = ControlPlane(workdir, yaml.safe_dump(config), xds, admin).start()
        admin_port = free_port()
        tls = XdsClientTls(
            str(certs.ca.cert_file), str(certs.client.cert), str(certs.client.key), SERVER_NAME
        )
        envoy = EnvoyProcess.start(
            workdir,
            bootstrap_yaml(NODE, [cp.xds], admin=Address("127.0.0.1", admin_port), tls=tls),
            admin_port,
            name=NODE,
        )
        envoy.wait_listener(listen.port, timeout=20)
        yield MtlsStack(certs, cluster, cp, envoy, listen)
    finally:
        stop_all()
        cluster.stop()


async def first_response(
    target: Address, credentials: grpc.ChannelCredentials | None, node_id: str
) -> DiscoveryResponse:
    """Open one SotW stream, ask for Clusters, return the first response (or raise)."""
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    channel = (
        grpc.aio.secure_channel(str(target), credentials, options=options)
        if credentials is not None
        else grpc.aio.insecure_channel(str(target))
    )
    try:
        call = channel.stream_stream(
            SOTW,
            request_serializer=DiscoveryRequest.SerializeToString,
            response_deserializer=DiscoveryResponse.FromString,
        )()
        await call.write(DiscoveryRequest(type_url=CLUSTER, node=Node(id=node_id)))
        response = await asyncio.wait_for(call.read(), 10)
        assert isinstance(response, DiscoveryResponse)
        call.cancel()
        return response
    finally:
        await channel.close()


def credentials(ca: Path, client: Pair | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


@pytest.mark.integration
def test_envoy_with_client_certificate_gets_config_over_mutual_tls(mtls: MtlsStack) -> None:
    """A real Envoy whose bootstrap has --tls-ca/--tls-cert/--tls-key/--tls-sni completes the
    TLS handshake, ACKs its config and routes a SET to the primary; the control plane says
    it serves mutual TLS."""
    primary = mtls.cluster.current_primary(GROUP)
    mtls.envoy.wait_cluster_hosts(f"redis/{GROUP}", [primary.address])
    stats = mtls.envoy.stats()
    assert stats.get("cluster.sentinel_xds.ssl.handshake", 0) >= 1
    assert stats.get("control_plane.connected_state") == 1
    conn = OneConnection("127.0.0.1", mtls.listen.port)
    try:
        assert conn.command("SET", "over-mtls", "1") == "OK"
    finally:
        conn.close()
    with primary.client() as client:
        assert client.get("over-mtls") == "1"
    (started,) = mtls.control_plane.events("service.started")
    assert started["xds_transport"] == "mtls"
    assert not mtls.control_plane.events("xds.transport.unprotected")


@pytest.mark.integration
def test_envoy_refuses_a_control_plane_whose_certificate_lacks_the_sni_name(
    mtls: MtlsStack,
) -> None:
    """--tls-sni is also the name the control plane's certificate must carry: a sidecar
    expecting another name fails the SAN check and never gets a listener."""
    certs, admin_port = mtls.certs, free_port()
    tls = XdsClientTls(
        str(certs.ca.cert_file), str(certs.client.cert), str(certs.client.key), "other.test"
    )
    envoy = EnvoyProcess.start(
        mtls.control_plane.directory.parent,
        bootstrap_yaml(
            "wrong-sni", [mtls.control_plane.xds], admin=Address("127.0.0.1", admin_port), tls=tls
        ),
        admin_port,
        name="wrong-sni",
    )
    try:
        wait_until(
            lambda: envoy.stats().get("cluster.sentinel_xds.ssl.fail_verify_san", 0) >= 1,
            10,
            what="Envoy's SAN check to fail",
        )
        assert envoy.ready_state() == "PRE_INITIALIZING"
        assert envoy.listeners() == []
        nodes = {sc.node_id for sc in mtls.control_plane.status().sidecars}
        assert "wrong-sni" not in nodes
    finally:
        envoy.stop()


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[XdsServer, Certs]]:
    """The real gRPC server in this process with mutual TLS, serving one snapshot."""
    certs = make_certs(tmp_path)
    tls = ServerTls(str(certs.server.cert), str(certs.server.key), str(certs.ca.cert_file), True)
    srv = XdsServer(SnapshotCache(), Sidecars())
    await srv.start("127.0.0.1", 0, server_credentials(tls))
    srv.cache.set(snap(A))
    yield srv, certs
    await srv.stop(0)


async def test_clients_without_a_valid_certificate_are_refused(
    tls_server: tuple[XdsServer, Certs],
) -> None:
    """Plaintext, TLS without a client certificate, and a certificate from another CA all
    fail with UNAVAILABLE before any stream opens (no sidecar is ever registered); the same
    call with the right certificate is answered, so the refusals are about the certificate."""
    srv, certs = tls_server
    target, ca = Address("127.0.0.1", srv.port), certs.ca.cert_file
    attempts: dict[str, grpc.ChannelCredentials | None] = {
        "plaintext": None,
        "no-client-cert": credentials(ca, None),
        "rogue-ca-cert": credentials(ca, certs.rogue_client),
    }
    for node_id, creds in attempts.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await first_response(target, creds, node_id)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, node_id
        assert len(srv.sidecars) == 0 and srv.open_streams == 0
    response = await first_response(target, credentials(ca, certs.client), "allowed")
    assert response.resources and response.type_url == CLUSTER


async def test_server_tls_without_client_certificates_still_refuses_plaintext(
    tmp_path: Path,
) -> None:
    """TLS without require_client_cert: a client that trusts the CA is served without a
    certificate of its own, and plaintext is still refused."""
    certs = make_certs(tmp_path)
    srv = XdsServer(SnapshotCache(), Sidecars())
    await srv.start(
        "127.0.0.1",
        0,
        server_credentials(ServerTls(str(certs.server.cert), str(certs.server.key))),
    )
    srv.cache.set(snap(A))
    try:
        target = Address("127.0.0.1", srv.port)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await first_response(target, None, "plaintext")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        response = await first_response(target, credentials(certs.ca.cert_file, None), "tls")
        assert response.resources
    finally:
        await srv.stop(0)


# --------------------------------------------------------------------------- bootstrap flags


def test_bootstrap_tls_flags_reference_the_files_in_an_upstream_tls_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-ca/--tls-cert/--tls-key/--tls-sni put the sidecar's client certificate, the CA
    and the required server name into the static xDS cluster's UpstreamTlsContext."""
    code = main(
        [
            "bootstrap", "--node-id", "n1", "--xds", "127.0.0.1:18000",
            "--tls-ca", "/etc/sx/ca.pem", "--tls-cert", "/etc/sx/n1.pem",
            "--tls-key", "/etc/sx/n1.key", "--tls-sni", "cp.example",
        ]
    )  # fmt: skip
    assert code == 0
    boot = yaml.safe_load(capsys.readouterr().out)
    socket = boot["static_resources"]["clusters"][0]["transport_socket"]
    ctx = socket["typed_config"]
    assert ctx["@type"].endswith("tls.v3.UpstreamTlsContext")
    assert ctx["sni"] == "cp.example"
    common = ctx["common_tls_context"]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": "/etc/sx/n1.pem"},
         "private_key": {"filename": "/etc/sx/n1.key"}}
    ]  # fmt: skip
    assert common["validation_context"] == {
        "trusted_ca": {"filename": "/etc/sx/ca.pem"},
        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "cp.example"}}],
    }
    assert (
        "transport_socket"
        not in bootstrap_dict("n1", [Address("127.0.0.1", 1)])["static_resources"]["clusters"][0]
    )


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--tls-cert", "/c.pem", "--tls-key", "/c.key"], "--tls-cert needs --tls-ca"),
        (["--tls-sni", "cp"], "--tls-sni needs --tls-ca"),
        (["--tls-ca", "/ca.pem", "--tls-cert", "/c.pem"], "--tls-cert and --tls-key"),
    ],
)
def test_bootstrap_tls_flag_mistakes_exit_2(
    flags: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Half-given TLS flags are a usage error (exit 2) naming the flag, with no output."""
    assert main(["bootstrap", "--node-id", "n", "--xds", "127.0.0.1:1", *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and error in err and err.count("\n") == 1


# --------------------------------------------------------------------------- config


def _config(tls: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "sentinels": ["127.0.0.1:26379"],
            "groups": {"g": {"listen": "127.0.0.1:6379"}},
            "xds": {"listen": "127.0.0.1:18000", "tls": tls},
        }
    )


def test_xds_tls_config_is_checked_like_the_server_will_load_it(tmp_path: Path) -> None:
    """A valid mTLS config loads; a key that belongs to another certificate is a config
    error naming xds.tls.key_file; the CA alone (no require) names require_client_cert."""
    certs = make_certs(tmp_path)
    good = {
        "cert_file": str(certs.server.cert),
        "key_file": str(certs.server.key),
        "client_ca_file": str(certs.ca.cert_file),
    }
    loaded = load_config_text(_config(good)).xds_tls
    assert loaded is not None and loaded.require_client_cert and loaded.mode == "mtls"
    with pytest.raises(ConfigError) as err:
        load_config_text(_config({**good, "key_file": str(certs.client.key)}))
    assert err.value.field == "xds.tls.key_file"
    assert "is not the private key of cert_file" in err.value.message
    with pytest.raises(ConfigError) as err:
        load_config_text(_config({**good, "require_client_cert": False}))
    assert err.value.field == "xds.tls.require_client_cert"


# --------------------------------------------------------------------------- admin listener


async def test_admin_binds_loopback_by_default_and_refuses_elsewhere_without_token() -> None:
    """The admin listener defaults to 127.0.0.1 and starts there without a token; a
    non-loopback address without one is refused before binding (here TEST-NET-1, which
    cannot be bound: a ConfigError, not an OSError, proves no bind was tried; the service
    checks a config built in code, the config's validation a file); with a token the bind
    is attempted (and fails here, so nothing is exposed)."""
    config = load_config_text(
        "sentinels: ['127.0.0.1:26379']\n"
        "groups: {g: {listen: '127.0.0.1:6379'}}\n"
        "xds: {listen: '127.0.0.1:18000'}\n"
    )
    assert config.admin_listen.is_loopback and config.admin_listen.host == "127.0.0.1"
    empty = StatusDocument(True, "ok", {}, (), (), (), ())
    admin = AdminServer(lambda: empty, lambda: (True, "ok"))
    with structlog.testing.capture_logs() as logs:
        await admin.start(Address("127.0.0.1", 0))
        await admin.stop()
    (listening,) = [e for e in logs if e["event"] == "admin.listening"]
    assert listening["operator_auth"] == "none (loopback only)"
    exposed = dataclasses.replace(config, admin_listen=Address("192.0.2.1", free_port()))
    with pytest.raises(ConfigError, match=r"admin\.token_file"):
        Service(exposed, io=FakeSentinelIO())
    with pytest.raises(OSError):
        await AdminServer(
            lambda: empty, lambda: (True, "ok"), token=Secret("a-token-of-16-chars-or-more")
        ).start(Address("192.0.2.1", free_port()))


def test_transport_warning_names_what_is_exposed(tmp_path: Path) -> None:
    """Startup warns when a plaintext listener is off loopback; TLS, or plaintext on
    loopback, is quiet. (Inline passwords without mutual TLS never get this far: the
    config refuses them: test_secrets.test_inline_sidecar_passwords_need_client_certificates.)"""
    certs = make_certs(tmp_path)
    mtls = ServerTls(str(certs.server.cert), str(certs.server.key), str(certs.ca.cert_file), True)
    tls_only = ServerTls(str(certs.server.cert), str(certs.server.key))
    public, loopback = Address("0.0.0.0", 18000), Address("127.0.0.1", 18000)
    assert transport_warning(public, mtls) is None
    assert transport_warning(loopback, None) is None
    assert transport_warning(public, tls_only) is None
    assert transport_warning(loopback, tls_only) is None
    plaintext = transport_warning(public, None)
    assert plaintext is not None and "not loopback" in plaintext
