"""Shared fixtures for the CLI tests: run ``tokenguard`` in-process and capture its output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tokenguard.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("keygen", "--alg", "ES256")`` -> exit code, stdout, stderr (argparse exits are caught)."""

    def _run(*argv: str) -> Result:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 2
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run
