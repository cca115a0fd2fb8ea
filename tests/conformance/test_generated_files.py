"""Checked-in files that the suite generates must be what it generates today.

docs/conformance-cases.md (`tokenguard conformance --list --markdown`) and
deploy/conformance/tokenguard.toml (`tokenguard conformance init`). When a test here fails,
regenerate with the command in the message and commit the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenguard.conformance.authserver import AS
from tokenguard.conformance.model import LEVELS
from tokenguard.conformance.resource import RS
from tokenguard.conformance.runner import main

ROOT = Path(__file__).resolve().parents[2]


def _output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("path", "argv"), [
    ("docs/conformance-cases.md", ("--list", "--markdown")),
    ("deploy/conformance/tokenguard.toml", ("init",)),
], ids=["cases", "sample-config"])
def test_checked_in_file_is_current(capsys: pytest.CaptureFixture[str], path: str, argv: tuple[str, ...]) -> None:
    expected = _output(capsys, *argv)
    actual = (ROOT / path).read_text(encoding="utf-8")
    assert actual == expected, (f"{path} is out of date: regenerate it with "
                                f"`tokenguard conformance {' '.join(argv)} > {path}`")


def test_every_case_is_listed_with_what_it_sends_and_expects(capsys: pytest.CaptureFixture[str]) -> None:
    plain = _output(capsys, "--list")
    markdown = _output(capsys, "--list", "--markdown")
    for case in RS.ordered() + AS.ordered():
        assert case.sent and case.expect, f"{case.id} has no sent/expect description"
        assert case.id in plain and f"| {case.id} | " in markdown
        assert f"| {LEVELS[case.level]} |" in markdown
    assert "../shared" not in markdown and "spec/" not in markdown  # a clone has no shared/ folder
