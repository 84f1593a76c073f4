"""The command line: user errors are one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xds.ops.cli import main


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "sentinels: []\ngroups: {g: {listen: '127.0.0.1:1'}}\nxds: {listen: '127.0.0.1:2'}\n",
            "sentinels",
        ),
        (
            "sentinels: ['x']\ngroups: {g: {listen: '127.0.0.1:1'}}\n"
            "xds: {listen: '127.0.0.1:2'}\n",
            "sentinels[0]",
        ),
        (
            "sentinels: ['127.0.0.1:1']\ngroups: {g: {listen: '127.0.0.1:1'}}\nxds: {}\n",
            "xds.listen",
        ),
        (
            "sentinels: ['127.0.0.1:1']\ngroups: {g: {listen: '127.0.0.1:1', bogus: 1}}\n"
            "xds: {listen: '127.0.0.1:2'}\n",
            "groups.g.bogus",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str
) -> None:
    """serve and check-config both refuse a bad file with one line naming the field."""
    path = write(tmp_path, text)
    for argv in (["check-config", path], ["serve", "--config", path]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert fragment in err and "Traceback" not in err


def test_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is a config error naming the path."""
    assert main(["check-config", "/nonexistent/sx.yaml"]) == 2
    assert "/nonexistent/sx.yaml" in capsys.readouterr().err


def test_bad_cli_address_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --xds address is rejected by argparse with exit code 2."""
    with pytest.raises(SystemExit) as exc:
        main(["bootstrap", "--node-id", "n", "--xds", "nohostport"])
    assert exc.value.code == 2
    assert "nohostport" in capsys.readouterr().err


def test_bootstrap_lists_every_xds_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    """Each --xds becomes an endpoint of the one static xDS cluster, node id as given."""
    assert (
        main(["bootstrap", "--node-id", "n1", "--xds", "127.0.0.1:1", "--xds", "127.0.0.2:2"]) == 0
    )
    boot = yaml.safe_load(capsys.readouterr().out)
    assert boot["node"]["id"] == "n1"
    assert boot["dynamic_resources"]["ads_config"]["set_node_on_first_message_only"] is True
    (cluster,) = boot["static_resources"]["clusters"]
    eps = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in eps]
    assert ports == [1, 2]


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` exits 0 and prints the distribution's version (what the .deb installs)."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"sentinel-xds {version('sentinel-xds')}"


def test_every_command_lists_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand's ``--help`` ends with an ``exit codes:`` line that names code 0."""
    from xds.ops.cli import EXIT_CODES

    for command in EXIT_CODES:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "exit codes: 0 " in " ".join(text.split()), command


def test_bash_completion_names_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    """``completion bash`` prints a script that completes every subcommand."""
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete " in script
    for command in ("serve", "check-config", "drain", "undrain", "status", "bootstrap"):
        assert command in script
