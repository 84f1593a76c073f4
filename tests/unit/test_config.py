"""Tests for xds.service.config: loading, defaults and one clear error per broken config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_sentinel_watch.model import Address
from xds.ads.limits import DEFAULT_FIRST_REQUEST_TIMEOUT_S, DEFAULT_MAX_STREAMS_PER_PEER
from xds.ads.node import DEFAULT_MAX_NODE_BYTES
from xds.ads.server import DEFAULT_MAX_STREAMS
from xds.resources.redis_group import PasswordFile
from xds.service.config import (
    Config,
    ConfigError,
    GroupConfig,
    LogConfig,
    WatchConfig,
    load_config,
    load_config_text,
    parse_config,
)
from xds.service.config_doc import DOC_PATH, render
from xds.service.config_keys import ADMIN, GROUP, LOG, TOP, WATCH
from xds.service.config_schema import sections

MINIMAL = """\
sentinels: ["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26381"]
groups:
  mymaster:
    listen: "127.0.0.1:6379"
xds:
  listen: "127.0.0.1:18000"
"""

FULL = """\
sentinels:
  - "127.0.0.1:26379"
  - "127.0.0.1:26380"
  - "[::1]:26381"
groups:
  mymaster:
    listen: "127.0.0.1:6379"
    op_timeout_ms: 250
  cache:
    listen: "127.0.0.1:6380"
xds:
  listen: "127.0.0.1:18000"
admin:
  listen: "127.0.0.1:9200"
watch:
  poll_interval_s: 2
  sentinel_timeout_s: 0.25
  role_check: false
log:
  format: console
  level: debug
"""


def minimal() -> dict[str, Any]:
    """A fresh, valid config as Python data, for tests to break one field at a time."""
    data: dict[str, Any] = yaml.safe_load(MINIMAL)
    return data


def test_minimal_config_loads_with_defaults() -> None:
    """The minimal file loads and every optional setting takes its documented default."""
    cfg = load_config_text(MINIMAL)
    assert cfg.sentinels == (
        Address("127.0.0.1", 26379),
        Address("127.0.0.1", 26380),
        Address("127.0.0.1", 26381),
    )
    assert cfg.groups == (GroupConfig("mymaster", Address("127.0.0.1", 6379), 5000),)
    assert cfg.xds_listen == Address("127.0.0.1", 18000)
    assert cfg.admin_listen == Address("127.0.0.1", 9102)
    assert cfg.watch == WatchConfig(poll_interval_s=1.0, sentinel_timeout_s=0.5, role_check=True)
    assert cfg.log == LogConfig(format="auto", level="info")


def test_full_config_loads_every_field() -> None:
    """Every documented setting is read, groups keep file order and ints are taken as floats."""
    cfg = load_config_text(FULL)
    assert cfg == Config(
        sentinels=(
            Address("127.0.0.1", 26379),
            Address("127.0.0.1", 26380),
            Address("::1", 26381),
        ),
        groups=(
            GroupConfig("mymaster", Address("127.0.0.1", 6379), 250),
            GroupConfig("cache", Address("127.0.0.1", 6380), 5000),
        ),
        xds_listen=Address("127.0.0.1", 18000),
        admin_listen=Address("127.0.0.1", 9200),
        watch=WatchConfig(poll_interval_s=2.0, sentinel_timeout_s=0.25, role_check=False),
        log=LogConfig(format="console", level="debug"),
    )
    assert isinstance(cfg.watch.poll_interval_s, float)
    assert [g.name for g in cfg.groups] == ["mymaster", "cache"]


def test_group_lookup_by_name() -> None:
    """Config.group returns the named group, or None for a name that is not configured."""
    cfg = load_config_text(FULL)
    found = cfg.group("cache")
    assert found is not None
    assert found.listen == Address("127.0.0.1", 6380)
    assert cfg.group("nope") is None


def test_optional_sections_may_be_empty() -> None:
    """Optional sections written as a bare key (YAML null) or {} mean "all defaults"."""
    cfg = load_config_text(MINIMAL + "admin:\nwatch: {}\nlog:\n")
    assert cfg.admin_listen == Address("127.0.0.1", 9102)
    assert cfg.watch == WatchConfig()
    assert cfg.log == LogConfig()


def test_yaml_merge_keys_are_not_duplicates() -> None:
    """A '<<' merge whose key is overridden explicitly is not reported as a duplicate key."""
    text = MINIMAL.replace(
        'groups:\n  mymaster:\n    listen: "127.0.0.1:6379"\n',
        'groups:\n  mymaster: &g\n    listen: "127.0.0.1:6379"\n'
        '  other:\n    <<: *g\n    listen: "127.0.0.1:6380"\n',
    )
    cfg = load_config_text(text)
    assert [(g.name, g.listen.port) for g in cfg.groups] == [("mymaster", 6379), ("other", 6380)]


def _set(path: str, value: Any) -> Any:
    """Return a mutator that sets ``path`` (dot-separated keys) in the minimal config."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Any:
    """Return a mutator that deletes ``path`` (dot-separated keys) from the minimal config."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def _add_group(name: Any, body: Any) -> Any:
    """Return a mutator that adds a group after 'mymaster'."""

    def mutate(data: dict[str, Any]) -> None:
        data["groups"][name] = body

    return mutate


BROKEN: list[Any] = [
    # top level
    pytest.param(
        _set("sentinal", []), "sentinal", "unknown key; expected one of:", id="top-unknown"
    ),
    pytest.param(_delete("sentinels"), "sentinels", "required", id="sentinels-missing"),
    pytest.param(_delete("groups"), "groups", "required", id="groups-missing"),
    pytest.param(_delete("xds"), "xds", "required", id="xds-missing"),
    # sentinels
    pytest.param(
        _set("sentinels", "127.0.0.1:26379"),
        "sentinels",
        "expected a list of 'host:port' strings, got str",
        id="sentinels-str",
    ),
    pytest.param(
        _set("sentinels", []), "sentinels", "must list at least one Sentinel", id="sentinels-empty"
    ),
    pytest.param(
        _set("sentinels", ["127.0.0.1:26379", "127.0.0.1:26380", "foo"]),
        "sentinels[2]",
        "'foo' is not 'host:port' (no port)",
        id="sentinel-no-port",
    ),
    pytest.param(
        _set("sentinels", ["127.0.0.1:0"]),
        "sentinels[0]",
        "out of range 1-65535",
        id="sentinel-port-zero",
    ),
    pytest.param(
        _set("sentinels", ["127.0.0.1:26379", 26380]),
        "sentinels[1]",
        "expected a 'host:port' string, got int",
        id="sentinel-int",
    ),
    pytest.param(
        _set("sentinels", ["127.0.0.1:26379", "127.0.0.1:26380", "127.0.0.1:26379"]),
        "sentinels[2]",
        "duplicate of sentinels[0] (127.0.0.1:26379)",
        id="sentinel-duplicate",
    ),
    pytest.param(
        _set("sentinels", ["[::1]:26379", "[0:0:0:0:0:0:0:1]:26379"]),
        "sentinels[1]",
        "duplicate of sentinels[0]",
        id="sentinel-duplicate-ipv6-spelling",
    ),
    # groups
    pytest.param(_set("groups", {}), "groups", "at least one group", id="groups-empty"),
    pytest.param(_set("groups", ["mymaster"]), "groups", "expected a mapping", id="groups-list"),
    pytest.param(
        _add_group("my master", {"listen": "127.0.0.1:6390"}),
        "groups",
        "'my master' contains ' '",
        id="group-name-space",
    ),
    pytest.param(
        _add_group("a@b", {"listen": "127.0.0.1:6390"}),
        "groups",
        "'a@b' contains '@'",
        id="group-name-at",
    ),
    pytest.param(
        _add_group("a/b", {"listen": "127.0.0.1:6390"}),
        "groups",
        "'a/b' contains '/'",
        id="group-name-slash",
    ),
    pytest.param(
        _add_group("", {"listen": "127.0.0.1:6390"}),
        "groups",
        "must not be empty",
        id="group-name-empty",
    ),
    pytest.param(
        _add_group(7, {"listen": "127.0.0.1:6390"}),
        "groups",
        "group name must be a string, got int",
        id="group-name-int",
    ),
    pytest.param(
        _set("groups.mymaster", "127.0.0.1:6379"),
        "groups.mymaster",
        "expected a mapping with 'listen'",
        id="group-not-mapping",
    ),
    pytest.param(_set("groups.mymaster", None), "groups.mymaster", "got null", id="group-null"),
    pytest.param(
        _delete("groups.mymaster.listen"), "groups.mymaster.listen", "required", id="listen-missing"
    ),
    pytest.param(
        _set("groups.mymaster.port", 6379),
        "groups.mymaster.port",
        "unknown key; expected one of: listen, op_timeout_ms",
        id="group-unknown-key",
    ),
    pytest.param(
        _set("groups.mymaster.listen", "localhost"),
        "groups.mymaster.listen",
        "(no port)",
        id="listen-no-port",
    ),
    pytest.param(
        _set("groups.mymaster.listen", "::1:6379"),
        "groups.mymaster.listen",
        "write IPv6 addresses as '[addr]:port'",
        id="listen-bare-ipv6",
    ),
    pytest.param(
        _set("groups.mymaster.op_timeout_ms", True),
        "groups.mymaster.op_timeout_ms",
        "expected an integer, got bool",
        id="op-timeout-bool",
    ),
    pytest.param(
        _set("groups.mymaster.op_timeout_ms", 2.5),
        "groups.mymaster.op_timeout_ms",
        "expected an integer, got float",
        id="op-timeout-float",
    ),
    pytest.param(
        _set("groups.mymaster.op_timeout_ms", 0),
        "groups.mymaster.op_timeout_ms",
        "must be between 1 and 600000, got 0",
        id="op-timeout-zero",
    ),
    pytest.param(
        _set("groups.mymaster.op_timeout_ms", 600_001),
        "groups.mymaster.op_timeout_ms",
        "must be between 1 and 600000",
        id="op-timeout-too-big",
    ),
    pytest.param(
        _add_group("other", {"listen": "10.0.0.1:6379"}),
        "groups.other.listen",
        "port 6379 is already used by groups.mymaster.listen",
        id="group-port-reused",
    ),
    # xds / admin
    pytest.param(_set("xds", "127.0.0.1:18000"), "xds", "expected a mapping", id="xds-str"),
    pytest.param(_set("xds", {}), "xds.listen", "required", id="xds-listen-missing"),
    pytest.param(
        _set("xds.listn", "x"), "xds.listn", "did you mean 'listen'?", id="xds-unknown-key"
    ),
    pytest.param(
        _set("admin.listen", "127.0.0.1:18000"),
        "admin.listen",
        "conflicts with xds.listen (127.0.0.1:18000)",
        id="admin-equals-xds",
    ),
    pytest.param(
        _set("xds.listen", "127.0.0.1:9102"),
        "admin.listen",
        "(the default) conflicts with xds.listen",
        id="default-admin-equals-xds",
    ),
    pytest.param(
        _set("admin.listen", 9102),
        "admin.listen",
        "expected a 'host:port' string, got int",
        id="admin-listen-int",
    ),
    pytest.param(
        _set("sentinels", ["127.0.0.1:26379", "localhost:26379"]),
        "sentinels[1]",
        "duplicate of sentinels[0] (127.0.0.1:26379), spelled localhost:26379",
        id="sentinel-duplicate-localhost",
    ),
    pytest.param(
        _set("sentinels", ["[::ffff:127.0.0.1]:26379", "127.0.0.1:26379"]),
        "sentinels[1]",
        "duplicate of sentinels[0] ([::ffff:127.0.0.1]:26379), spelled 127.0.0.1:26379",
        id="sentinel-duplicate-ipv4-mapped",
    ),
    pytest.param(
        _set("groups.mymaster.listen", "redis.local:6379"),
        "groups.mymaster.listen",
        "'redis.local' is a host name; Envoy listeners need an IP address",
        id="listen-hostname",
    ),
    pytest.param(
        _set("groups.mymaster.listen", "localhost:6379"),
        "groups.mymaster.listen",
        "'localhost' is a host name",
        id="listen-localhost",
    ),
    pytest.param(
        _set("admin.listen", "0.0.0.0:9200"),
        "admin.listen",
        "0.0.0.0:9200 is not loopback: set admin.token_file",
        id="admin-beyond-loopback-without-token",
    ),
    pytest.param(
        _set("admin.token_file", 7),
        "admin.token_file",
        "expected a file path, got int",
        id="admin-token-file-int",
    ),
    pytest.param(
        _set("xds.max_streams_per_peer", 5001),
        "xds.max_streams_per_peer",
        "must be between 1 and 5000 (xds.max_streams), got 5001",
        id="per-peer-above-max-streams",
    ),
    pytest.param(
        _set("xds.max_streams_per_peer", 0),
        "xds.max_streams_per_peer",
        "must be between 1 and 1000000, got 0",
        id="per-peer-zero",
    ),
    pytest.param(
        _set("xds.first_request_timeout_s", 0.05),
        "xds.first_request_timeout_s",
        "must be >= 0.1 and <= 300, got 0.05",
        id="first-request-timeout-too-small",
    ),
    pytest.param(
        _set("xds.first_request_timeout_s", 301),
        "xds.first_request_timeout_s",
        "must be >= 0.1 and <= 300, got 301",
        id="first-request-timeout-too-big",
    ),
    pytest.param(
        _set("xds.max_node_bytes", 1023),
        "xds.max_node_bytes",
        "must be between 1024 and 4194304, got 1023",
        id="max-node-bytes-too-small",
    ),
    pytest.param(
        _set("xds.max_node_bytes", 4 * 1024 * 1024 + 1),
        "xds.max_node_bytes",
        "must be between 1024 and 4194304",
        id="max-node-bytes-too-big",
    ),
    # watch
    pytest.param(
        _set("watch.poll_interval_s", 0),
        "watch.poll_interval_s",
        "must be > 0 and <= 60, got 0",
        id="poll-zero",
    ),
    pytest.param(
        _set("watch.poll_interval_s", 61),
        "watch.poll_interval_s",
        "must be > 0 and <= 60",
        id="poll-too-big",
    ),
    pytest.param(
        _set("watch.poll_interval_s", float("nan")),
        "watch.poll_interval_s",
        "got nan",
        id="poll-nan",
    ),
    pytest.param(
        _set("watch.poll_interval_s", "1s"),
        "watch.poll_interval_s",
        "expected a number of seconds, got str",
        id="poll-str",
    ),
    pytest.param(
        _set("watch.sentinel_timeout_s", 31),
        "watch.sentinel_timeout_s",
        "must be > 0 and <= 30",
        id="timeout-too-big",
    ),
    pytest.param(
        _set("watch.sentinel_timeout_s", False),
        "watch.sentinel_timeout_s",
        "got bool",
        id="timeout-bool",
    ),
    pytest.param(
        _set("watch.role_check", "yes"),
        "watch.role_check",
        "expected true or false, got str",
        id="role-check-str",
    ),
    pytest.param(
        _set("watch.interval", 1), "watch.interval", "unknown key", id="watch-unknown-key"
    ),
    pytest.param(_set("watch", [1]), "watch", "expected a mapping", id="watch-list"),
    # log
    pytest.param(
        _set("log.format", "text"),
        "log.format",
        "'text' is not one of: auto, json, console",
        id="log-format",
    ),
    pytest.param(
        _set("log.level", "INFO"),
        "log.level",
        "'INFO' is not one of: debug, info, warning, error",
        id="log-level-case",
    ),
    pytest.param(_set("log.level", 10), "log.level", "got int", id="log-level-int"),
]


_BY_CLUSTER = "sidecar_password_file_by_cluster"
_UP = "groups.mymaster.upstream_auth"


def _by_cluster(value: Any, side: str = "upstream_auth", default: bool = True) -> Any:
    """A mutator setting ``groups.mymaster.<side>`` to a file form with ``value`` as map."""
    body: dict[str, Any] = {_BY_CLUSTER: value}
    body.update({"sidecar_password_file": "/etc/app/redis.pass"} if default else {})
    return _set(f"groups.mymaster.{side}", body if default else {**body, "password_env": "P"})


BY_CLUSTER_BROKEN: list[Any] = [
    pytest.param(
        _by_cluster({"harbor": "redis.pass"}),
        f"{_UP}.{_BY_CLUSTER}.harbor",
        "'redis.pass' is not an absolute path",
        id="relative-path",
    ),
    pytest.param(
        _by_cluster({"": "/etc/harbor/redis.pass"}),
        f"{_UP}.{_BY_CLUSTER}",
        "node cluster names must be non-empty strings, got ''",
        id="empty-cluster",
    ),
    pytest.param(
        _by_cluster({7: "/etc/harbor/redis.pass"}),
        f"{_UP}.{_BY_CLUSTER}",
        "node cluster names must be non-empty strings, got 7",
        id="int-cluster",
    ),
    pytest.param(
        _by_cluster(["/etc/harbor/redis.pass"], "downstream_auth"),
        f"groups.mymaster.downstream_auth.{_BY_CLUSTER}",
        "expected a mapping of node cluster to absolute path, got list",
        id="list",
    ),
    pytest.param(
        _by_cluster({}), f"{_UP}.{_BY_CLUSTER}", "at least one node cluster", id="empty-map"
    ),
    pytest.param(
        _by_cluster({"harbor": 1}),
        f"{_UP}.{_BY_CLUSTER}.harbor",
        "expected a path on the sidecar's host, got int",
        id="int-path",
    ),
    pytest.param(
        _by_cluster({"harbor": "/etc/harbor/redis.pass"}, default=False),
        f"{_UP}.{_BY_CLUSTER}",
        "overrides sidecar_password_file, which is not given",
        id="with-inline-password",
    ),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), BY_CLUSTER_BROKEN)
def test_sidecar_password_file_by_cluster_errors_name_the_field(
    mutate: Any, field: str, fragment: str
) -> None:
    """A bad per-cluster password path map is one line naming the bad entry."""
    test_broken_config_names_field_and_problem(mutate, field, fragment)


def test_sidecar_password_file_by_cluster_is_parsed_in_file_order() -> None:
    """The map lands on the group's PasswordFile next to the default path."""
    data = minimal()
    _by_cluster({"harbor": "/srv/harbor/redis.pass", "docker-registry": "/etc/dr/redis.pass"})(data)
    auth = parse_config(data).groups[0].upstream_auth
    assert auth == PasswordFile(
        "/etc/app/redis.pass",
        None,
        (("harbor", "/srv/harbor/redis.pass"), ("docker-registry", "/etc/dr/redis.pass")),
    )


@pytest.mark.parametrize(("mutate", "field", "fragment"), BROKEN)
def test_broken_config_names_field_and_problem(mutate: Any, field: str, fragment: str) -> None:
    """Each broken config raises one ConfigError naming the field, with a helpful message."""
    data = minimal()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    err = info.value
    assert err.field == field
    assert fragment in err.message
    assert str(err) == f"{field}: {err.message}"
    assert "\n" not in str(err)


def test_broken_config_count() -> None:
    """The table of broken configs stays at least 20 cases long."""
    assert len(BROKEN) >= 20


def test_first_error_wins() -> None:
    """With several problems, the error reported is the first one in file order."""
    data = minimal()
    data["sentinels"] = []
    data["xds"] = {}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.field == "sentinels"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(None, "config is empty", id="empty"),
        pytest.param(["sentinels"], "expected a mapping at the top level", id="list"),
        pytest.param("sentinels", "got str", id="scalar"),
    ],
)
def test_top_level_must_be_a_mapping(data: object, fragment: str) -> None:
    """An empty file or a non-mapping top level is a whole-file error (field '')."""
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.field == ""
    assert fragment in info.value.message
    assert str(info.value) == info.value.message


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a whole-file ConfigError naming the path and the OS reason."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == ""
    assert str(info.value) == f"cannot read config file '{path}': No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A path that is a directory is reported as unreadable, not as a traceback."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"cannot read config file '{tmp_path}': ")


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported as unreadable."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"sentinels: ['caf\xe9:1']\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not valid UTF-8" in str(info.value)


def test_load_config_reads_file(tmp_path: Path) -> None:
    """load_config reads a file (str or Path) and gives the same result as the text loader."""
    path = tmp_path / "sentinel-xds.yaml"
    path.write_text(FULL, encoding="utf-8")
    assert load_config(path) == load_config_text(FULL)
    assert load_config(str(path)) == load_config_text(FULL)


def test_yaml_syntax_error_gives_position(tmp_path: Path) -> None:
    """A YAML syntax error names the source file, line and column, on one line."""
    path = tmp_path / "bad.yaml"
    path.write_text('sentinels: ["127.0.0.1:26379"\ngroups: {\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.field == ""
    assert str(err).startswith(f"{path}: invalid YAML at line ")
    assert ", column " in str(err)
    assert "\n" not in str(err)


def test_yaml_syntax_error_default_source() -> None:
    """load_config_text names '<string>' as the source unless told otherwise."""
    with pytest.raises(ConfigError, match=r"^<string>: invalid YAML at line 2, column 1: "):
        load_config_text("a: [\n")
    with pytest.raises(ConfigError, match=r"^cfg\.yaml: invalid YAML"):
        load_config_text("a: [\n", source="cfg.yaml")


def test_duplicate_yaml_key_is_rejected() -> None:
    """A key repeated in one YAML mapping is an error instead of silently keeping the last."""
    text = MINIMAL.replace("xds:", 'groups:\n  other:\n    listen: "127.0.0.1:6380"\nxds:')
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.field == ""
    assert "line 5, column 1: found duplicate key 'groups'" in str(info.value)


def test_python_tags_are_not_constructed() -> None:
    """The loader is safe: Python-object tags are refused as invalid YAML."""
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config_text("a: !!python/object/apply:os.system ['true']\n")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """Absurdly nested YAML gives a ConfigError rather than a RecursionError traceback."""
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config_text("[" * 20_000)


def test_error_string_is_one_line() -> None:
    """Newlines in the field or message (e.g. from a group name) never reach str(error)."""
    err = ConfigError("groups.a\nb", "first line\nsecond line\r\n  third")
    assert str(err) == "groups.a b: first line second line third"
    data = minimal()
    data["groups"]["bad\nname"] = {"listen": "127.0.0.1:6390"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert "\n" not in str(info.value)
    assert "\\n" in str(info.value)  # shown escaped, so the reader still sees it


def test_error_without_field_is_just_the_message() -> None:
    """A whole-file error prints as the bare message, and keeps field/message attributes."""
    err = ConfigError("", "something is wrong")
    assert str(err) == "something is wrong"
    assert (err.field, err.message) == ("", "something is wrong")


# ------------------------------------------------------------------ xds limits, admin token


def test_xds_limits_parse_and_default_from_the_protocol() -> None:
    """The stream limits are read from xds.*; absent, they are the protocol's own defaults
    (one definition, in xds.ads), and the per-peer default never exceeds max_streams."""
    cfg = load_config_text(MINIMAL)
    assert (cfg.xds_max_streams, cfg.xds_max_streams_per_peer) == (DEFAULT_MAX_STREAMS, 64)
    assert cfg.xds_max_streams_per_peer == DEFAULT_MAX_STREAMS_PER_PEER
    assert cfg.xds_first_request_timeout_s == DEFAULT_FIRST_REQUEST_TIMEOUT_S == 10.0
    assert cfg.xds_max_node_bytes == DEFAULT_MAX_NODE_BYTES == 262_144
    assert Config((), (), Address("127.0.0.1", 1)).xds_max_streams == DEFAULT_MAX_STREAMS
    data = minimal()
    data["xds"].update(max_streams=10)
    assert parse_config(data).xds_max_streams_per_peer == 10
    data["xds"].update(max_streams_per_peer=3, first_request_timeout_s=0.1, max_node_bytes=1024)
    cfg = parse_config(data)
    assert (cfg.xds_max_streams_per_peer, cfg.xds_max_node_bytes) == (3, 1024)
    assert cfg.xds_first_request_timeout_s == 0.1
    assert isinstance(cfg.xds_first_request_timeout_s, float)


def _token_config(
    tmp_path: Path, token: str, mode: int = 0o600, listen: str = "0.0.0.0:9200"
) -> str:
    path = tmp_path / "admin.token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return MINIMAL + f'admin: {{listen: "{listen}", token_file: "{path}"}}\n'


def test_admin_token_file_allows_a_non_loopback_admin(tmp_path: Path) -> None:
    """With a token file (0600, 16+ characters) the admin API may listen beyond loopback;
    the token is read through the secret-file rules and never printed."""
    cfg = load_config_text(_token_config(tmp_path, "0123456789abcdef-token"))
    assert cfg.admin_listen == Address("0.0.0.0", 9200)
    assert cfg.admin_token_file == str(tmp_path / "admin.token")
    assert cfg.admin_token is not None and cfg.admin_token.reveal() == "0123456789abcdef-token"
    assert "0123456789abcdef" not in repr(cfg)
    lazy = load_config_text(
        _token_config(tmp_path, "0123456789abcdef-token"), resolve_secrets=False
    )
    assert lazy.admin_token is None and lazy.admin_token_file == cfg.admin_token_file


@pytest.mark.parametrize(
    ("token", "mode", "fragment"),
    [
        ("short-token", 0o600, "it holds 11 characters; at least 16 are required"),
        ("0123456789abcdef-token", 0o644, "mode 0644 gives group or others access"),
    ],
)
def test_admin_token_file_rules(tmp_path: Path, token: str, mode: int, fragment: str) -> None:
    """A short or readable-by-others token file is refused naming admin.token_file."""
    with pytest.raises(ConfigError) as info:
        load_config_text(_token_config(tmp_path, token, mode))
    assert info.value.field == "admin.token_file"
    assert fragment in info.value.message and token not in str(info.value)


# ------------------------------------------------------------------ one declaration, docs


def test_docs_config_md_is_generated_from_the_declarations() -> None:
    """docs/config.md is exactly what the declarations render. If this fails, run
    `python -m xds.service.config_doc` and commit docs/config.md."""
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/config.md is stale: run `.venv/bin/python -m xds.service.config_doc`"
    )


def test_every_declared_key_is_in_the_reference_and_the_example() -> None:
    """Each key of each section has a row in docs/config.md and appears (set or
    commented) in envoy/sentinel-xds.yaml, the example operators copy."""
    example = (DOC_PATH.parents[1] / "envoy" / "sentinel-xds.yaml").read_text()
    doc = render()
    for section in sections(TOP):
        for key in section.keys:
            assert f"| `{key.name}` |" in doc
            assert re.search(rf"\b{key.name}:", example), f"{section.name}: {key.name}"


def test_dataclass_defaults_are_the_declared_ones() -> None:
    """WatchConfig, LogConfig, GroupConfig and Config default to what the reference says."""
    for section, value in ((WATCH, WatchConfig()), (LOG, LogConfig())):
        for key in section.keys:
            assert getattr(value, key.name) == key.default, key.name
    assert GroupConfig("g", Address("127.0.0.1", 1)).op_timeout_ms == GROUP["op_timeout_ms"].default
    assert Config((), (), Address("127.0.0.1", 1)).admin_listen == ADMIN["listen"].default


def test_a_sentinel_named_by_host_name_and_by_its_address_is_one_sentinel() -> None:
    """Sentinels are identified by resolved address: this host's name (resolved through
    /etc/hosts) and the address it resolves to are the same Sentinel, an error naming
    both; a name that does not resolve is kept as written (DNS may be down)."""
    import socket

    name = socket.gethostname()
    try:
        ip = socket.getaddrinfo(name, 26379, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip(f"this host's name {name!r} does not resolve here")
    data = minimal()
    data["sentinels"] = [f"{Address(str(ip), 26379)}", f"{name}:26379"]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.field == "sentinels[1]"
    assert f"duplicate of sentinels[0] ({Address(str(ip), 26379)}), spelled {name}:26379" in str(
        info.value
    )
    data["sentinels"] = ["127.0.0.1:26379", "no-such-host.invalid:26379"]
    assert len(parse_config(data).sentinels) == 2
