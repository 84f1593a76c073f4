"""A corpus of broken config files, each run through the real ``sentinel-xds check-config``.

``config_corpus/expected-errors.txt`` holds, per file, the one line the command
must print (after ``sentinel-xds: config error: ``). Every file must give exit
code 2, nothing on stdout, exactly that line on stderr, and never a secret value
that the file contains. Adding a case is adding a file and its line.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_config_prints_the_expected_line_and_exits_2(
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config on the broken file: exit 2, empty stdout, exactly the expected line."""
    monkeypatch.chdir(CORPUS)
    monkeypatch.delenv("SENTINEL_XDS_CORPUS_UNSET", raising=False)
    code = main(["check-config", name])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", f"{PREFIX}{EXPECTED[name]}\n")
    assert "hunter2-in-the-file" not in err  # the inline password case must not echo it
    assert "corpus-app-password" not in err
