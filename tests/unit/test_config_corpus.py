"""A corpus of broken config files, each run through the real ``sentinel-xds check-config``.

``config_corpus/expected-errors.txt`` holds, per file, the one line the command
must print (after ``sentinel-xds: config error: ``). Every file must give exit
code 2, nothing on stdout, exactly that line on stderr, and never a secret value
that the file contains. Adding a case is adding a file and its line.

Git keeps no file modes beyond the executable bit, so the test runs on a copy
whose password files (``*.pass``) get the mode a deployment would give them,
0600, except ``group-readable.pass`` (0640), which must be refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xds.ops.cli import main

CORPUS = Path(__file__).parent / "config_corpus"
PREFIX = "sentinel-xds: config error: "


def expected_errors() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (CORPUS / "expected-errors.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, message = line.partition(": ")
        assert sep and name not in out, f"bad or duplicate line in expected-errors.txt: {line!r}"
        out[name] = message
    return out


EXPECTED = expected_errors()


def test_every_broken_file_has_an_expected_error_and_there_are_enough() -> None:
    """No config in the corpus without its expected line, no line without its file, and at
    least 20 cases."""
    files = sorted(p.name for p in CORPUS.glob("*.yaml"))
    assert files == sorted(EXPECTED)
    assert len(files) >= 20


MODES = {"group-readable.pass": 0o640}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus copied, with password files at their deployment modes."""
    copy = tmp_path_factory.mktemp("corpus") / "config_corpus"
    shutil.copytree(CORPUS, copy)
    for secret in copy.glob("*.pass"):
        secret.chmod(MODES.get(secret.name, 0o600))
    return copy


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_config_prints_the_expected_line_and_exits_2(
    name: str,
    corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config on the broken file: exit 2, empty stdout, exactly the expected line."""
    monkeypatch.chdir(corpus)
    monkeypatch.delenv("SENTINEL_XDS_CORPUS_UNSET", raising=False)
    code = main(["check-config", name])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"{PREFIX}{EXPECTED[name]}\n")
    assert "hunter2-in-the-file" not in err  # the inline password case must not echo it
    assert "corpus-app-password" not in err
    assert "group-readable-password" not in err and "abc1234" not in err
