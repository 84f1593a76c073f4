"""``sentinel-xds check-client-config``: what it says about docker-registry configs.

Each rule exists because a registry misconfigured for the sidecar fails silently
(cache errors are swallowed) or loudly at the next failover (503 everywhere);
these tests pin that every such config is reported, that a correct one passes,
and the exit codes (0 fine, 1 findings, 2 unreadable input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_sentinel_watch import Address
from xds.ops.cli import main
from xds.ops.registry_check import (
    ClientConfigError,
    SidecarListener,
    check_registry_config,
    listeners_from_config,
)
from xds.service.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SIDECAR = [SidecarListener("mymaster", Address("127.0.0.1", 6379))]
FAKE_CREDENTIAL = "s3cret-for-tests"


def registry(**overrides: Any) -> dict[str, Any]:
    """A correct registry config behind a sidecar on 127.0.0.1:6379, with overrides."""
    config: dict[str, Any] = {
        "version": 0.1,
        "storage": {"cache": {"blobdescriptor": "redis"}, "filesystem": {"rootdirectory": "/x"}},
        "redis": {"addr": "127.0.0.1:6379", "db": 0},
        "health": {"tcp": [{"addr": "127.0.0.1:6379", "interval": "10s", "threshold": 3}]},
        "http": {"addr": ":5000"},
    }
    for dotted, value in overrides.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return config


def fields(findings: list[Any]) -> list[str]:
    return [f.field for f in findings]


def test_shipped_examples_pass_together() -> None:
    """envoy/docker-registry.yml is correct for the control plane in envoy/sentinel-xds.yaml."""
    data = yaml.safe_load((ROOT / "envoy" / "docker-registry.yml").read_text())
    listeners = listeners_from_config(load_config(ROOT / "envoy" / "sentinel-xds.yaml"))
    assert check_registry_config(data, listeners) == []
    assert check_registry_config(data) == []


def test_correct_config_has_no_findings() -> None:
    """Cache in Redis at the sidecar, db 0, no password, health.tcp at the sidecar: fine."""
    assert check_registry_config(registry(), SIDECAR) == []


def test_config_aimed_at_a_redis_node_reports_addr_and_health() -> None:
    """The setup this project replaces (Wikimedia's): addr and health.tcp at a Redis node."""
    data = registry(
        redis__addr="rdb1003.eqiad.wmnet:6379",
        health__tcp=[{"addr": "rdb1003.eqiad.wmnet:6379", "timeout": "3s", "interval": "10s"}],
    )
    findings = check_registry_config(data, SIDECAR)
    assert fields(findings) == ["redis.addr", "health.tcp[0].addr", "health.tcp"]
    assert "rdb1003.eqiad.wmnet:6379 is not a sidecar listener" in findings[0].message
    assert "mymaster 127.0.0.1:6379" in findings[0].message
    assert "looks like a Redis node" in findings[1].message
    assert "503" in findings[1].message


def test_without_control_plane_config_a_remote_addr_is_reported() -> None:
    """Without --config a sidecar can only be told by being on loopback."""
    findings = check_registry_config(registry(redis__addr="10.64.0.5:6379"))
    assert fields(findings)[0] == "redis.addr"
    assert "not on this host" in findings[0].message
    local = registry(redis__addr="localhost:6379", health__tcp=[{"addr": "localhost:6379"}])
    assert check_registry_config(local) == []


def test_addr_at_a_listener_on_another_port_is_reported() -> None:
    """A loopback address that is not the group's listener (e.g. a local Redis) is wrong."""
    data = registry(redis__addr="127.0.0.1:6380", health__tcp=[{"addr": "127.0.0.1:6380"}])
    findings = check_registry_config(data, SIDECAR)
    assert fields(findings) == ["redis.addr", "health.tcp[0].addr", "health.tcp"]


@pytest.mark.parametrize(
    ("addr", "listen"),
    [
        ("localhost:6379", "127.0.0.1:6379"),
        ("127.0.0.1:6379", "0.0.0.0:6379"),
        ("[::1]:6379", "[::1]:6379"),
    ],
)
def test_equivalent_addresses_match_the_listener(addr: str, listen: str) -> None:
    """localhost is the IPv4 loopback; a wildcard listener accepts any local address."""
    listeners = [SidecarListener("mymaster", Address.parse(listen))]
    data = registry(redis__addr=addr, health__tcp=[{"addr": addr}])
    assert check_registry_config(data, listeners) == []


def test_second_group_listener_is_accepted() -> None:
    """With several groups, redis.addr may be any group's listener."""
    listeners = [*SIDECAR, SidecarListener("registry", Address("127.0.0.1", 6390))]
    data = registry(redis__addr="127.0.0.1:6390", health__tcp=[{"addr": "127.0.0.1:6390"}])
    assert check_registry_config(data, listeners) == []


@pytest.mark.parametrize("db", [1, 15])
def test_db_other_than_zero_is_reported(db: int) -> None:
    """SELECT through the sidecar switches its shared upstream connection for every client."""
    findings = check_registry_config(registry(redis__db=db), SIDECAR)
    assert fields(findings) == ["redis.db"]
    assert f"is {db}" in findings[0].message
    assert "db 0" in findings[0].message


def test_db_not_an_integer_is_reported() -> None:
    """A non-integer redis.db is a finding naming the value."""
    findings = check_registry_config(registry(redis__db="zero"), SIDECAR)
    assert fields(findings) == ["redis.db"]
    assert "expected an integer" in findings[0].message


def test_db_absent_means_zero() -> None:
    """No redis.db means db 0, which is fine behind the sidecar."""
    assert check_registry_config(registry(redis__db=None), SIDECAR) == []


def test_password_without_sidecar_auth_is_reported() -> None:
    """Envoy without downstream auth refuses AUTH; the registry then runs without its cache."""
    findings = check_registry_config(registry(**{"redis__password": FAKE_CREDENTIAL}), SIDECAR)
    assert fields(findings) == ["redis.password"]
    assert "no downstream auth" in findings[0].message
    assert FAKE_CREDENTIAL not in str(findings[0])  # never echo a secret


def test_password_matching_a_sidecar_that_requires_auth_is_fine() -> None:
    """A password is fine when the sidecar's group requires downstream auth."""
    listeners = [SidecarListener("mymaster", Address("127.0.0.1", 6379), requires_auth=True)]
    assert check_registry_config(registry(**{"redis__password": FAKE_CREDENTIAL}), listeners) == []


def test_sidecar_requiring_auth_without_password_is_reported() -> None:
    """A sidecar that requires AUTH but a registry without a password is a finding."""
    listeners = [SidecarListener("mymaster", Address("127.0.0.1", 6379), requires_auth=True)]
    findings = check_registry_config(registry(), listeners)
    assert fields(findings) == ["redis.password"]
    assert "NOAUTH" in findings[0].message


def test_missing_health_check_is_reported() -> None:
    """Without a check on the sidecar, a registry whose sidecar died keeps taking traffic."""
    findings = check_registry_config(registry(health=None), SIDECAR)
    assert fields(findings) == ["health.tcp"]
    assert "no check aimed at the sidecar (127.0.0.1:6379)" in findings[0].message


def test_unrelated_tcp_check_is_left_alone() -> None:
    """A TCP check on something that is not Redis-like (another port) is not our business."""
    data = registry(health__tcp=[{"addr": "127.0.0.1:6379"}, {"addr": "swift.example:443"}])
    assert check_registry_config(data, SIDECAR) == []


def test_health_check_at_a_redis_node_next_to_a_sidecar_check_is_reported() -> None:
    """A health.tcp entry aimed at a Redis node is reported even beside a sidecar check."""
    data = registry(health__tcp=[{"addr": "127.0.0.1:6379"}, {"addr": "10.0.0.7:6379"}])
    findings = check_registry_config(data, SIDECAR)
    assert fields(findings) == ["health.tcp[1].addr"]


def test_health_entry_without_address_is_reported() -> None:
    """A health.tcp entry without addr is a finding."""
    data = registry(health__tcp=[{"addr": "127.0.0.1:6379"}, {"timeout": "1s"}])
    findings = check_registry_config(data, SIDECAR)
    assert fields(findings) == ["health.tcp[1].addr"]


def test_cache_not_in_redis_is_reported() -> None:
    """A registry with an in-memory cache never talks to the sidecar."""
    data = registry(storage__cache__blobdescriptor="inmemory")
    assert fields(check_registry_config(data, SIDECAR)) == ["storage.cache.blobdescriptor"]


def test_missing_redis_section_is_reported() -> None:
    """A registry config without a redis section is a finding."""
    findings = check_registry_config(registry(redis=None), SIDECAR)
    assert fields(findings) == ["redis.addr"]


def test_bad_address_is_reported() -> None:
    """A malformed redis.addr is a finding naming the value."""
    findings = check_registry_config(registry(redis__addr="127.0.0.1"), SIDECAR)
    assert fields(findings)[0] == "redis.addr"
    assert "not 'host:port'" in findings[0].message


@pytest.mark.parametrize(
    ("override", "field"),
    [({"redis": ["a"]}, "redis"), ({"health__tcp": {"addr": "x"}}, "health.tcp")],
)
def test_wrong_shapes_are_input_errors(override: dict[str, Any], field: str) -> None:
    """A section of the wrong type is not a registry config: an error, not a finding."""
    with pytest.raises(ClientConfigError, match=f"^{field}: expected a"):
        check_registry_config(registry(**override), SIDECAR)


# --- the command --------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_cli_ok_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A clean registry config: the command prints OK and exits 0."""
    path = write(tmp_path, "config.yml", registry())
    control = ROOT / "envoy" / "sentinel-xds.yaml"
    assert main(["check-client-config", str(path), "--config", str(control)]) == 0
    assert capsys.readouterr().out == f"{path}: OK for use behind the sidecar\n"


def test_cli_prints_one_line_per_finding_and_exits_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Findings: one line each on stdout, exit code 1."""
    path = write(
        tmp_path, "config.yml", registry(redis__db=2, **{"redis__password": FAKE_CREDENTIAL})
    )
    assert main(["check-client-config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["redis.db", "redis.password"]
    assert all(line.startswith(f"{path}: ") for line in lines)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("redis: [unclosed\n", "invalid YAML at line"),
        ("", "got an empty file"),
        ("- a\n- b\n", "got list"),
        ("redis: 3\n", "redis: expected a mapping, got int"),
    ],
)
def test_cli_unreadable_input_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    """An unreadable registry config exits 2 with one line."""
    path = tmp_path / "config.yml"
    if content is not None:
        path.write_text(content)
    assert main(["check-client-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sentinel-xds: {path}: ")
    assert message in err
    assert len(err.splitlines()) == 1


def test_cli_bad_control_plane_config_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --config control-plane file exits 2 naming the field."""
    path = write(tmp_path, "config.yml", registry())
    control = write(tmp_path, "cp.yaml", {"sentinels": [], "groups": {}, "xds": {}})
    assert main(["check-client-config", str(path), "--config", str(control)]) == 2
    assert "config error: sentinels" in capsys.readouterr().err


def test_cli_bootstrap_listen_override_is_the_sidecar_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two sidecars on one host: the second's bootstrap moves its listener (--listen), and
    its registry is checked against that, not against the group's listen."""
    from xds.resources.bootstrap import bootstrap_yaml

    control = ROOT / "envoy" / "sentinel-xds.yaml"
    boot = tmp_path / "sidecar-2.yaml"
    boot.write_text(
        bootstrap_yaml(
            "registry-2",
            [Address("127.0.0.1", 18000)],
            listen={"mymaster": Address("127.0.0.1", 6389)},
        )
    )
    moved = {"redis__addr": "127.0.0.1:6389", "health__tcp": [{"addr": "127.0.0.1:6389"}]}
    second = write(tmp_path, "registry-2.yml", registry(**moved))
    first = write(tmp_path, "registry-1.yml", registry())
    args = ["--config", str(control), "--bootstrap", str(boot)]
    assert main(["check-client-config", str(second), *args]) == 0
    assert main(["check-client-config", str(second), "--config", str(control)]) == 1
    assert main(["check-client-config", str(first), *args]) == 1
    out = capsys.readouterr().out
    assert "127.0.0.1:6379 is not a sidecar listener; the sidecar listens on: mymaster " in out


def test_cli_bootstrap_needs_config_and_known_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--bootstrap needs --config, and its --listen groups must exist."""
    from xds.resources.bootstrap import bootstrap_yaml

    path = write(tmp_path, "config.yml", registry())
    boot = tmp_path / "boot.yaml"
    boot.write_text(
        bootstrap_yaml("x", [Address("127.0.0.1", 18000)], listen={"other": Address("::1", 1)})
    )
    assert main(["check-client-config", str(path), "--bootstrap", str(boot)]) == 2
    assert "--bootstrap needs --config" in capsys.readouterr().err
    control = ROOT / "envoy" / "sentinel-xds.yaml"
    assert (
        main(["check-client-config", str(path), "-c", str(control), "--bootstrap", str(boot)]) == 2
    )
    assert "overrides group 'other', which is not in the control-plane config" in (
        capsys.readouterr().err
    )
