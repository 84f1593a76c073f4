"""The typed admin documents keep the wire format of the dict literals they replaced.

``/status`` and ``/events`` are read by scripts and alerts as well as by our own
tools, so the JSON must not change: each document built by the service is
compared, byte for byte after ``json.dumps`` (so key order counts), with what
the old dict-literal code produced from the same state. That old code is kept
here, verbatim, as the reference. Then: every document reads back to an equal
value, and a bad document fails with one line naming the field.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import pytest

from redis_sentinel_watch import Address, GroupTopology, Health, SentinelView
from xds.ads.sidecars import Sidecar, TypeState
from xds.ads.typeurls import CLUSTER, ENDPOINT, LISTENER
from xds.ops.admin_client import AdminClient, AdminError
from xds.service.admin_build import failover_event, group_state, sentinel_state, sidecar_state
from xds.service.admin_documents import (
    AdminDocumentError,
    EventsDocument,
    StatusDocument,
)
from xds.service.timeline import FailoverRecord, acked_primaries

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"  # noqa: S105
PRIMARY = Address("127.0.0.1", 7001)


# --------------------------------------------------------------------------- the old code


def old_sidecar_dict(sc: Sidecar) -> dict[str, Any]:
    """``Sidecar.as_dict()`` as it was."""
    return {
        "stream_id": sc.stream_id,
        "node_id": sc.node_id,
        "cluster": sc.cluster,
        "envoy_version": sc.envoy_version,
        "peer": sc.peer,
        "protocol": sc.protocol,
        "connected_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sc.connected_at)),
        "types": {
            url.rsplit(".", 1)[-1]: {
                "state": ts.state().value,
                "sent": ts.sent_version,
                "acked": ts.acked_version,
                "nacked": ts.nacked_version,
                "nack_detail": ts.nack_detail,
                "nacks": ts.nacks,
            }
            for url, ts in sorted(sc.types.items())
        },
    }


def old_status(
    groups: list[GroupTopology],
    views: list[SentinelView],
    sidecars: list[Sidecar],
    versions: dict[str, str],
    failovers: list[FailoverRecord],
    ok: bool,
    why: str,
) -> dict[str, Any]:
    """``Service.status()`` as it was (one profile: every sidecar judged on ``versions``)."""
    group_dicts = []
    for g in groups:
        group_dicts.append(
            {
                "name": g.name,
                "primary": str(g.primary) if g.primary else None,
                "replicas": [str(r) for r in g.replicas],
                "drained": [str(r) for r in g.drained],
                "config_epoch": g.config_epoch,
                "agreeing": g.agreeing,
                "sentinels": g.sentinels,
                "health": g.health.value,
                "degraded": g.health is not Health.OK,
                "provisional": g.provisional,
                "reason": g.reason,
                "dissent": [],  # added later (Sentinels disagreeing); none in this state
                "replica_sync": [],  # added later (replicas' sync); not checked in this state
            }
        )
    sidecar_dicts = []
    for sc in sorted(sidecars, key=lambda s: (s.node_id, s.stream_id)):
        entry = old_sidecar_dict(sc)
        entry["primaries"] = acked_primaries(sc)
        for url, ts in sc.types.items():
            key = url.rsplit(".", 1)[-1]
            if (
                ts.requested
                and versions.get(url)
                and ts.acked_version != versions[url]
                and entry["types"][key]["state"] == "SYNCED"
            ):
                entry["types"][key]["state"] = "STALE"
        sidecar_dicts.append(entry)
    return {
        "ready": ok,
        "reason": why,
        "versions": {url.rsplit(".", 1)[-1]: v for url, v in versions.items()},
        "sentinels": [
            {"address": str(v.sentinel), "reachable": v.reachable, "tilt": v.tilt, "error": v.error}
            for v in views
        ],
        "groups": group_dicts,
        "sidecars": sidecar_dicts,
        "failovers": [f.as_dict() for f in failovers],
    }


# --------------------------------------------------------------------------- state


def synced(version: str, names: frozenset[str] = frozenset()) -> TypeState:
    return TypeState(requested=True, sent_version=version, sent_names=names, acked_version=version)


def state() -> tuple[
    list[GroupTopology], list[SentinelView], list[Sidecar], dict[str, str], list[FailoverRecord]
]:
    groups = [
        GroupTopology(
            "mymaster",
            PRIMARY,
            replicas=(Address("127.0.0.1", 7002), Address("::1", 7003)),
            config_epoch=4,
            agreeing=3,
            sentinels=3,
            health=Health.OK,
            drained=(Address("::1", 7003),),
        ),
        GroupTopology(
            "other",
            None,
            sentinels=3,
            agreeing=1,
            health=Health.DEGRADED,
            reason="no majority for any primary",
            provisional=True,
        ),
    ]
    views = [
        SentinelView(Address("127.0.0.1", 26379), True),
        SentinelView(Address("127.0.0.1", 26380), False, error="timed out"),
        SentinelView(Address("127.0.0.1", 26381), True, tilt=True),
    ]
    healthy = Sidecar(
        7,
        "ipv4:127.0.0.1:5000",
        "sotw",
        node_id="registry-1",
        cluster="docker-registry",
        envoy_version="1.40.0",
        connected_at=1795823120.25,
    )
    healthy.types = {
        LISTENER: synced("l1"),
        ENDPOINT: synced("e1", frozenset({f"redis/mymaster/{PRIMARY}"})),
        CLUSTER: synced("c1"),
        SECRET_TYPE: TypeState(),  # created, never requested: NOT_SENT
    }
    troubled = Sidecar(3, "ipv6:[::1]:5001", "delta", node_id="registry-0", connected_at=2.0)
    troubled.types = {
        CLUSTER: synced("c0"),  # ACKed an older version than we serve: STALE
        LISTENER: TypeState(
            requested=True,
            sent_version="l1",
            acked_version="l0",
            nacked_version="l1",
            nack_detail="cannot bind '127.0.0.1:6379': Address already in use",
            nacks=2,
        ),
    }
    anonymous = Sidecar(9, "ipv4:127.0.0.1:5002", "sotw", connected_at=3.0)
    versions = {CLUSTER: "c1", ENDPOINT: "e1", LISTENER: "l1"}
    done = FailoverRecord(
        "mymaster", "127.0.0.1:7002", str(PRIMARY), "drain", "+try-failover", 4, at=1795823120.4
    )
    done.detect_to_switch_ms, done.detect_to_push_ms = 164.2, 175.0
    done.switch_to_push_ms, done.detect_to_acked_ms = 10.8, 179.4
    done.acked, done.sidecars = 1, 2
    bare = FailoverRecord("other", None, "127.0.0.1:7010", "reconcile", "poll", 0, at=1.0)
    bare.superseded = True
    return groups, views, [healthy, troubled, anonymous], versions, [done, bare]


def new_status(ok: bool, why: str) -> StatusDocument:
    groups, views, sidecars, versions, failovers = state()
    return StatusDocument(
        ready=ok,
        reason=why,
        versions={url.rsplit(".", 1)[-1]: v for url, v in versions.items()},
        sentinels=tuple(sentinel_state(v) for v in views),
        groups=tuple(group_state(g) for g in groups),
        sidecars=tuple(
            sidecar_state(sc, versions)
            for sc in sorted(sidecars, key=lambda s: (s.node_id, s.stream_id))
        ),
        failovers=tuple(failover_event(f) for f in failovers),
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("ok", "why"), [(True, "ok"), (False, "only 1 of 3 Sentinels reachable")])
def test_status_json_is_what_the_dict_literal_was(ok: bool, why: str) -> None:
    """Same keys, same order, same values as the old ``Service.status()`` dict."""
    old = old_status(*state(), ok, why)
    new = new_status(ok, why).to_json()
    assert json.dumps(new) == json.dumps(old)
    # the interesting cases are really in there
    types = {sc["node_id"]: sc["types"] for sc in old["sidecars"]}
    assert types["registry-0"]["Cluster"]["state"] == "STALE"
    assert types["registry-0"]["Listener"]["state"] == "NACKED"
    assert types["registry-1"]["Secret"]["state"] == "NOT_SENT"
    assert old["sidecars"][2]["primaries"] == {"mymaster": str(PRIMARY)}


def test_events_json_is_what_the_dict_literal_was() -> None:
    """``/events`` is ``{"failovers": [FailoverRecord.as_dict(), ...]}``, as before."""
    failovers = state()[4]
    old = {"failovers": [r.as_dict() for r in failovers]}
    new = EventsDocument(tuple(failover_event(r) for r in failovers)).to_json()
    assert json.dumps(new) == json.dumps(old)


def test_documents_read_back_equal() -> None:
    """``from_json(to_json(d)) == d``, also after a trip through JSON text."""
    status = new_status(True, "ok")
    assert StatusDocument.from_json(json.loads(json.dumps(status.to_json()))) == status
    events = EventsDocument(status.failovers)
    assert EventsDocument.from_json(json.loads(json.dumps(events.to_json()))) == events
    assert status.group("other") is not None and status.group("nope") is None
    registry_0 = status.sidecar("registry-0")
    assert registry_0 is not None and not registry_0.synced("Cluster")
    registry_1 = status.sidecar("registry-1")
    assert registry_1 is not None and registry_1.synced("Cluster", "ClusterLoadAssignment")
    assert status.groups[0].promotable == ("127.0.0.1:7002",)


def _broken(path: list[str | int], value: object) -> dict[str, Any]:
    doc: Any = new_status(True, "ok").to_json()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return dict(doc)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["ready"], "yes", "status.ready: expected true or false, got a string 'yes'"),
        (["reason"], KeyError, "status.reason: missing"),
        (["groups"], {}, "status.groups: expected a list, got an object"),
        (["groups", 0], [], "status.groups[0]: expected a JSON object, got a list"),
        (
            ["groups", 0, "primary"],
            3,
            "status.groups[0].primary: expected a string or null, got a number 3",
        ),
        (
            ["groups", 1, "health"],
            "sad",
            "status.groups[1].health: expected one of ok, degraded, unknown, got 'sad'",
        ),
        (
            ["groups", 0, "config_epoch"],
            True,
            "status.groups[0].config_epoch: expected an integer, got a boolean True",
        ),
        (
            ["groups", 0, "replicas"],
            ["127.0.0.1:7002", 7003],
            "status.groups[0].replicas: expected a list of strings, got a list",
        ),
        (
            ["sidecars", 1, "types", "Cluster", "state"],
            "FINE",
            "status.sidecars[1].types.Cluster.state: expected one of SYNCED, STALE, NACKED, "
            "NOT_SENT, got 'FINE'",
        ),
        (
            ["sidecars", 2, "primaries"],
            {"mymaster": None},
            "status.sidecars[2].primaries: expected an object of strings, got an object",
        ),
        (
            ["failovers", 1, "at"],
            None,
            "status.failovers[1].at: expected a number, got null",
        ),
    ],
)
def test_a_bad_status_names_the_field(path: list[str | int], value: object, message: str) -> None:
    """One line naming the field: what was expected and what came."""
    with pytest.raises(AdminDocumentError) as caught:
        StatusDocument.from_json(_broken(path, value))
    assert str(caught.value) == message


def test_not_an_object_and_unknown_fields() -> None:
    """A body that is not an object is refused; a field this version does not know is
    ignored (a newer server may add one)."""
    with pytest.raises(AdminDocumentError, match=r"^status: expected a JSON object, got a list$"):
        StatusDocument.from_json([])
    with pytest.raises(AdminDocumentError, match=r"^events\.failovers: missing$"):
        EventsDocument.from_json({"error": "HTTP 502 from a proxy"})
    newer = new_status(True, "ok").to_json() | {"added_later": 1}
    assert StatusDocument.from_json(newer) == new_status(True, "ok")


def test_the_client_names_the_field_of_a_bad_document() -> None:
    """``AdminClient.status()`` against a server answering a document with a renamed field
    (a real HTTP server on loopback): AdminError naming the URL and the field."""
    body = json.dumps(_broken(["groups", 0, "primary"], KeyError)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            client = AdminClient(f"127.0.0.1:{server.server_address[1]}")
            with pytest.raises(AdminError) as caught:
                client.status()
        finally:
            server.shutdown()
            thread.join(5)
    assert str(caught.value) == f"{client.base}/status: status.groups[0].primary: missing"
