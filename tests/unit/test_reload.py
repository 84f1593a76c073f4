"""The reload decision: a valid file is applied whole, anything else keeps the old state.

Pure checks of :func:`xds.service.reload.plan_reload` (what is applied, what is
ignored until a restart, what is refused), then :meth:`Service.reload` over
scripted Sentinels and a real config file: the new credentials reach the
I/O, a changed group is republished, a broken file changes nothing and is
counted and logged with the field it names, and Sentinels or groups added or
removed are taken over by a new watcher without a gap in what is served.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from redis_sentinel_watch import Address, FakeSentinelIO
from redis_sentinel_watch.auth import Credentials, Secret
from xds.ads.discovery_request import NodeInfo
from xds.service import app, reload
from xds.service.app import Service
from xds.service.config import Config, ConfigError, load_config, parse_config
from xds.service.reload import diff_fields, plan_reload
from xds.service.tls import ServerTls, TlsMaterial, check_server_tls

SENTINEL = Address("127.0.0.1", 26997)
PRIMARY = Address("127.0.0.1", 7411)
SENTINEL_2 = Address("127.0.0.1", 26998)
PRIMARY_H = Address("127.0.0.1", 7412)


def _data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "sentinels": [str(SENTINEL)],
        "groups": {"g": {"listen": "127.0.0.1:6393"}},
        "xds": {"listen": "127.0.0.1:18077"},
        "admin": {"listen": "127.0.0.1:9177"},
        "watch": {"poll_interval_s": 0.5},
    }
    data.update(over)
    return data


def _config(**over: Any) -> Config:
    return parse_config(_data(**over))


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def test_same_file_changes_nothing() -> None:
    plan = plan_reload(_config(), None, _config(), None)
    assert plan.changed == () and plan.ignored == () and plan.tls is None


def test_changed_fields_are_named_never_valued() -> None:
    old = _config()
    new = dataclasses.replace(
        old,
        redis_auth=Credentials(Secret("new-password-1234")),
        watch=dataclasses.replace(old.watch, poll_interval_s=0.2),
        groups=(dataclasses.replace(old.groups[0], op_timeout_ms=900),),
    )
    plan = plan_reload(old, None, new, None)
    assert set(plan.changed) == {"redis_auth", "watch.poll_interval_s", "groups.g.op_timeout_ms"}
    assert plan.config == new
    rotated = dataclasses.replace(new, redis_auth=Credentials(Secret("newer-password-5678")))
    assert plan_reload(new, None, rotated, None).changed == ("redis_auth.password",)
    assert "newer" not in repr(plan_reload(new, None, rotated, None))


def test_listen_changes_are_reported_and_ignored_the_rest_applied() -> None:
    old = _config()
    new = _config(
        xds={"listen": "127.0.0.1:18078", "max_streams": 50},
        admin={"listen": "127.0.0.1:9178"},
        watch={"poll_interval_s": 0.25},
    )
    plan = plan_reload(old, None, new, None)
    # the per-peer default follows max_streams, so it changed too
    assert set(plan.ignored) == {
        "xds.listen",
        "admin.listen",
        "xds.max_streams",
        "xds.max_streams_per_peer",
    }
    assert plan.changed == ("watch.poll_interval_s",)
    assert plan.config.xds_listen == old.xds_listen
    assert plan.config.admin_listen == old.admin_listen
    assert plan.config.xds_max_streams == old.xds_max_streams
    assert plan.config.watch.poll_interval_s == 0.25


@pytest.mark.parametrize(
    ("over", "changed", "rewatch"),
    [
        ({"sentinels": [str(SENTINEL), str(SENTINEL_2)]}, {"sentinels"}, True),
        (
            {"groups": {"g": {"listen": "127.0.0.1:6393"}, "h": {"listen": "127.0.0.1:6394"}}},
            {"groups.h"},
            True,
        ),
        ({"groups": {"h": {"listen": "127.0.0.1:6394"}}}, {"groups.g", "groups.h"}, True),
        (
            {"groups": {"g": {"listen": "127.0.0.1:6393", "sidecars": {"clusters": ["web"]}}}},
            {"groups.g.sidecars"},
            False,
        ),
    ],
)
def test_topology_changes_are_applied(
    over: dict[str, Any], changed: set[str], rewatch: bool
) -> None:
    """Sentinels and groups added or removed need a new watcher; a selector does not."""
    plan = plan_reload(_config(), None, _config(**over), None)
    assert set(plan.changed) == changed and plan.rewatch is rewatch
    assert plan.config == _config(**over)


def test_reordered_sentinels_are_not_a_change() -> None:
    both = [str(SENTINEL), str(SENTINEL_2)]
    plan = plan_reload(_config(sentinels=both), None, _config(sentinels=both[::-1]), None)
    assert plan.changed == () and not plan.rewatch
    assert plan.config.sentinels == (SENTINEL, SENTINEL_2)


@pytest.mark.parametrize(
    ("reloaded", "field"),
    [
        (None, "xds.tls"),
        (ServerTls("/c.pem", "/k.pem"), "xds.tls.require_client_cert"),
    ],
)
def test_the_xds_transport_still_needs_a_restart(reloaded: ServerTls | None, field: str) -> None:
    """TLS on or off, or whether a client certificate is required, is a property of
    the bound listener (the plan alone decides: no file is read here)."""
    running = dataclasses.replace(
        _config(), xds_tls=ServerTls("/c.pem", "/k.pem", "/ca.pem", require_client_cert=True)
    )
    with pytest.raises(ConfigError) as err:
        plan_reload(running, None, dataclasses.replace(running, xds_tls=reloaded), None)
    assert err.value.field == field
    assert "restart" in err.value.message


def test_dropping_the_token_of_a_running_non_loopback_admin_is_refused() -> None:
    """The new file is valid on its own (admin back on loopback, no token), but the
    admin listener that runs is kept until a restart and would lose its token."""
    running = dataclasses.replace(
        _config(),
        admin_listen=Address("0.0.0.0", 9177),
        admin_token_file="/etc/token",  # noqa: S106
    )
    with pytest.raises(ConfigError) as err:
        plan_reload(running, None, _config(), None)
    assert err.value.field == "admin.token_file"
    assert "0.0.0.0:9177 is not loopback" in err.value.message
    assert plan_reload(running, None, dataclasses.replace(_config(), admin_token_file="/t"), None)  # noqa: S106


def test_reordered_groups_are_not_a_change() -> None:
    two = {"a": {"listen": "127.0.0.1:6395"}, "b": {"listen": "127.0.0.1:6396"}}
    swapped = dict(reversed(list(two.items())))
    plan = plan_reload(_config(groups=two), None, _config(groups=swapped), None)
    assert plan.changed == ()


def test_certificate_contents_count_as_a_change() -> None:
    old, new = TlsMaterial(b"k1", b"c1", None), TlsMaterial(b"k2", b"c2", None)
    plan = plan_reload(_config(), old, _config(), new)
    assert plan.tls == new
    assert set(plan.changed) == {"xds.tls.cert_file", "xds.tls.key_file"}
    assert plan_reload(_config(), old, _config(), old).tls is None


def test_diff_names_the_file_keys() -> None:
    old = _config()
    new = dataclasses.replace(old, xds_max_node_bytes=1000, admin_token_file="/x")  # noqa: S106 - a path
    assert set(diff_fields(old, new, "")) == {"xds.max_node_bytes", "admin.token_file"}


# --------------------------------------------------------------------------- Service.reload


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "config": tmp_path / "config.yaml",
        "password": _secret_file(tmp_path / "redis.pass", "first-password-123"),
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data))


def _with_auth(files: dict[str, Path], **over: Any) -> dict[str, Any]:
    return _data(redis_auth={"password_file": str(files["password"])}, **over)


def _reloads(svc: Service) -> dict[str, float]:
    """``sentinel_xds_config_reloads_total`` by result."""
    (family,) = [
        f
        for f in text_string_to_metric_families(svc.metrics.render().decode())
        if f.name == "sentinel_xds_config_reloads"
    ]
    return {s.labels["result"]: s.value for s in family.samples if s.name.endswith("_total")}


async def _service(
    files: dict[str, Path], data: dict[str, Any], also: dict[str, Address] | None = None
) -> tuple[Service, FakeSentinelIO]:
    """A service whose Sentinel agrees on group ``g`` (and the groups in ``also``)."""
    _write(files["config"], data)
    io = FakeSentinelIO()
    for group, primary in {"g": PRIMARY, **(also or {})}.items():
        io.say(SENTINEL, group, primary, epoch=1)
        io.set_role(primary, "master")
    svc = Service(load_config(files["config"]), io=io, config_path=str(files["config"]))
    await svc.watcher.poll_once()
    assert svc.cache.current() is not None
    return svc, io


async def test_valid_reload_reaches_the_io_and_republishes(files: dict[str, Path]) -> None:
    svc, io = await _service(files, _with_auth(files))
    generation = svc.cache.current()
    _secret_file(files["password"], "second-password-456")
    data = _with_auth(
        files,
        groups={"g": {"listen": "127.0.0.1:6393", "op_timeout_ms": 700}},
        watch={"poll_interval_s": 0.2},
    )
    _write(files["config"], data)
    with capture_logs() as logs:
        assert await svc.reload()
    (_, _, redis_auth, _) = io.settings[-1]
    assert redis_auth is not None and redis_auth.password.reveal() == "second-password-456"
    assert svc.config.groups[0].op_timeout_ms == 700
    assert svc.cache.current() is not generation  # the group's resources were rebuilt
    (event,) = [e for e in logs if e["event"] == "config.reloaded"]
    assert set(event["changed"]) == {
        "redis_auth.password",
        "groups.g.op_timeout_ms",
        "watch.poll_interval_s",
    }
    assert "second-password" not in repr(logs)
    assert _reloads(svc) == {"success": 1.0, "failure": 0.0}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("sentinels: [oops\n", ""),
        (None, "redis_auth.password_file"),
    ],
)
async def test_invalid_reload_keeps_the_old_state(
    files: dict[str, Path], text: str | None, field: str
) -> None:
    svc, io = await _service(files, _with_auth(files))
    before, snapshot = svc.config, svc.cache.current()
    if text is not None:
        files["config"].write_text(text)
    else:
        files["password"].chmod(0o644)  # refused by the secret-file rules
    with capture_logs() as logs:
        assert not await svc.reload()
    assert svc.config is before
    assert svc.cache.current() is snapshot
    assert io.settings == []
    (event,) = [e for e in logs if e["event"] == "config.reload_failed"]
    assert event["field"] == field
    assert "\n" not in event["error"] and (not field or field in event["error"])
    assert not [e for e in logs if e["event"] == "config.reloaded"]
    assert _reloads(svc) == {"success": 0.0, "failure": 1.0}


async def test_listen_change_is_logged_and_kept(files: dict[str, Path]) -> None:
    svc, _ = await _service(files, _data())
    _write(files["config"], _data(xds={"listen": "127.0.0.1:18079"}))
    with capture_logs() as logs:
        assert await svc.reload()
    (ignored,) = [e for e in logs if e["event"] == "config.reload_ignored"]
    assert ignored["fields"] == ["xds.listen"]
    assert svc.config.xds_listen == Address("127.0.0.1", 18077)


async def test_reload_is_off_without_a_config_path() -> None:
    svc = Service(_config(), io=FakeSentinelIO())
    assert not await svc.reload()


def _reload_failures(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "config.reload_failed"]


async def test_a_snapshot_that_cannot_be_built_changes_nothing(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new groups' resources are built before anything is switched: when that fails,
    the I/O keeps its credentials, the config and the snapshot stay, and the reload is
    a counted ``config.reload_failed``, not a half-applied reload and a task traceback."""
    svc, io = await _service(files, _with_auth(files))
    before, snapshot = svc.config, svc.cache.current()
    _secret_file(files["password"], "second-password-456")
    _write(
        files["config"],
        _with_auth(files, groups={"g": {"listen": "127.0.0.1:6393", "op_timeout_ms": 700}}),
    )

    def broken(specs: object) -> None:
        raise ValueError("cluster g references no endpoint")

    monkeypatch.setattr(app, "build_snapshot", broken)
    with capture_logs() as logs:
        assert not await svc.reload()
    assert svc.config is before and svc.cache.current() is snapshot
    assert io.settings == []
    (event,) = _reload_failures(logs)
    assert "cluster g references no endpoint" in event["error"] and "\n" not in event["error"]
    assert "second-password" not in repr(logs)
    assert _reloads(svc) == {"success": 0.0, "failure": 1.0}


async def test_an_unexpected_error_while_preparing_is_a_failed_reload(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only ConfigError: an OSError from a file replaced mid-reload (or any bug) keeps
    the old state and is logged and counted like any failed reload."""
    svc, io = await _service(files, _with_auth(files))
    before = svc.config

    def vanished(path: object) -> Config:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(reload, "load_config", vanished)
    with capture_logs() as logs:
        assert not await svc.reload()
    assert svc.config is before and io.settings == []
    (event,) = _reload_failures(logs)
    assert "FileNotFoundError" in event["error"] and str(files["config"]) in event["error"]
    assert _reloads(svc) == {"success": 0.0, "failure": 1.0}


def test_a_tls_file_gone_between_read_and_check_is_a_problem_not_an_oserror(
    tmp_path: Path,
) -> None:
    """``load_server_tls`` reads, checks with ``ssl`` and reads again; a file removed in
    between made ``ssl.load_verify_locations`` raise FileNotFoundError out of the reload."""
    gone = str(tmp_path / "gone.pem")
    problem = check_server_tls(ServerTls(gone, str(tmp_path / "gone.key")))
    assert problem is not None and problem.field == "cert_file" and gone in problem.message


# --------------------------------------------------------------------------- a new watcher

TWO_GROUPS = {"g": {"listen": "127.0.0.1:6393"}, "h": {"listen": "127.0.0.1:6394"}}


def _served(svc: Service, profile: Any = None) -> set[str]:
    """The listeners the snapshot of ``profile`` holds (``redis/<group>``)."""
    snapshot = svc.cache.current(profile)
    assert snapshot is not None
    return set(snapshot.listeners)


async def test_an_added_sentinel_is_polled_by_a_new_watcher(files: dict[str, Path]) -> None:
    svc, io = await _service(files, _data())
    old = svc.watcher
    io.say(SENTINEL_2, "g", PRIMARY, epoch=1)
    _write(files["config"], _data(sentinels=[str(SENTINEL), str(SENTINEL_2)]))
    with capture_logs() as logs:
        assert await svc.reload()
    assert svc.watcher is not old and svc.watcher.sentinels == (SENTINEL, SENTINEL_2)
    # polled once before it took over: both answer, both agree, still ready
    assert [(v.sentinel, v.reachable) for v in svc.watcher.views] == [
        (SENTINEL, True),
        (SENTINEL_2, True),
    ]
    (g,) = svc.watcher.topology.groups
    assert (g.primary, g.agreeing, g.sentinels) == (PRIMARY, 2, 2)
    assert svc.ready()[0]
    (event,) = [e for e in logs if e["event"] == "config.reloaded"]
    assert event["changed"] == ["sentinels"]


async def test_a_replaced_watcher_is_cancelled_without_stopping_the_service(
    files: dict[str, Path],
) -> None:
    """The running watch task is cancelled, which is not "the watcher died" (exit 1),
    and the old watcher's last conclusions are not served."""
    svc, io = await _service(files, _data())
    svc._start_watch()
    old_task, old = svc._watch_task, svc.watcher
    assert old_task is not None
    io.say(SENTINEL_2, "g", PRIMARY, epoch=1)
    _write(files["config"], _data(sentinels=[str(SENTINEL), str(SENTINEL_2)]))
    try:
        assert await svc.reload()
        await asyncio.wait_for(asyncio.gather(old_task, return_exceptions=True), 5)
        assert old_task.cancelled() and svc.exit_code == 0 and not svc._stop.is_set()
        assert svc._watch_task is not None and not svc._watch_task.done()
        served = svc.cache.current()
        io.say(SENTINEL, "g", PRIMARY_H, epoch=2)  # only the old watcher hears of it…
        io.set_role(PRIMARY_H, "master")
        await old.poll_once()
        assert svc.cache.current() is served  # …and is not listened to any more
    finally:
        assert svc._watch_task is not None
        svc._watch_task.cancel()
        await asyncio.gather(svc._watch_task, return_exceptions=True)


async def test_an_added_group_is_served_once_it_has_a_primary(files: dict[str, Path]) -> None:
    """Until the Sentinels agree on the new group's primary, the old group keeps its
    primary and is served (its failovers too): nothing empty, nothing dropped."""
    svc, io = await _service(files, _data())
    _write(files["config"], _data(groups=TWO_GROUPS))
    with capture_logs() as logs:
        assert await svc.reload()
    assert [(g.name, g.primary) for g in svc.watcher.topology.groups] == [
        ("g", PRIMARY),
        ("h", None),
    ]
    assert _served(svc) == {"redis/g"}
    (waiting,) = [e for e in logs if e["event"] == "xds.waiting_for_topology"]
    assert waiting["groups"] == ["h"]
    # a failover of g while h still waits reaches the sidecars
    moved = Address("127.0.0.1", 7413)
    io.say(SENTINEL, "g", moved, epoch=2)
    io.set_role(moved, "master")
    await svc.watcher.poll_once()
    served = svc.cache.current()
    assert served is not None and set(served.endpoints) == {f"redis/g/{moved}"}
    io.say(SENTINEL, "h", PRIMARY_H, epoch=1)
    io.set_role(PRIMARY_H, "master")
    await svc.watcher.poll_once()
    assert _served(svc) == {"redis/g", "redis/h"}


async def test_a_removed_group_leaves_the_snapshot(files: dict[str, Path]) -> None:
    svc, _ = await _service(files, _data(groups=TWO_GROUPS), also={"h": PRIMARY_H})
    assert _served(svc) == {"redis/g", "redis/h"}
    _write(files["config"], _data(groups={"g": TWO_GROUPS["g"]}))
    with capture_logs() as logs:
        assert await svc.reload()
    assert _served(svc) == {"redis/g"}
    assert [g.name for g in svc.watcher.topology.groups] == ["g"]
    (event,) = [e for e in logs if e["event"] == "config.reloaded"]
    assert event["changed"] == ["groups.h"]


async def test_a_changed_selector_reaches_new_streams(files: dict[str, Path]) -> None:
    svc, _ = await _service(files, _data(groups=TWO_GROUPS), also={"h": PRIMARY_H})
    web = NodeInfo(id="n1", cluster="web", user_agent="envoy/1.40.0")
    assert svc.cache.profile_of(web) is None  # every group
    only_db = {**TWO_GROUPS, "h": {**TWO_GROUPS["h"], "sidecars": {"clusters": ["db"]}}}
    _write(files["config"], _data(groups=only_db))
    assert await svc.reload()
    assert svc.watcher.groups == ("g", "h")  # no new watcher for a selector
    profile = svc.cache.profile_of(NodeInfo(id="n2", cluster="web", user_agent="envoy/1.40.0"))
    assert profile is not None and _served(svc, profile) == {"redis/g"}
