"""What a person reads (issue 13): a table with no log noise and no colour codes off a terminal,
levels spelled out with POLICY explained, full reasons with -v / --json / --junit."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from tokenguard.conformance import report
from tokenguard.conformance.model import POLICY_OFF_REASON, Result
from tokenguard.conformance.runner import main, use_colour

from .broken_verifier import BrokenVerifier
from .conftest import free_port

LONG = "the verifier answered something long: " + "x" * 300 + " END"


def _r(rid: str, outcome: str, level: str, reason: str = "") -> Result:
    return Result(rid, "RS", "9449 §4.3", level, "title", "401·D(invalid_dpop_proof)", "200 [ok]", outcome, reason)


RESULTS = [_r("DPOP-RS-07a", "fail", "M", LONG), _r("DPOP-RS-08a", "pass", "P"),
           _r("MTLS-RS-04c", "skip", "P", POLICY_OFF_REASON), _r("DPOP-RS-32c", "fail", "P", "iat as string")]


def test_table_clips_but_verbose_and_machine_formats_do_not() -> None:
    short = report.table(RESULTS, width=120)
    assert "END" not in short and "…" in short
    assert all(len(line) <= 120 for line in short.splitlines()[:5])
    assert LONG in report.table(RESULTS, width=120, verbose=True)
    assert json.loads(report.to_json(RESULTS))["results"][0]["reason"] == LONG
    failure = ET.fromstring(report.to_junit(RESULTS)).find(".//failure")
    assert failure is not None and failure.get("message") == LONG


def test_levels_are_spelled_out_and_policy_explained() -> None:
    text = report.table(RESULTS, width=160)
    assert "DPOP-RS-08a     POLICY" in text and "DPOP-RS-07a     MUST" in text
    assert "POLICY     1 passed,   1 failed,   1 skipped   (this project's profile" in text
    assert "--skip-policy turned off 1 result: MTLS-RS-04c" in text
    assert "POLICY failures (DPOP-RS-32c) are deviations from this project's profile" in text


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(Tty()) and not use_colour(io.StringIO()) and not use_colour(Tty(), disabled=True)
    monkeypatch.setenv("NO_COLOR", "")
    assert not use_colour(Tty())
    assert "\033[" in report.table(RESULTS, colour=True) and "\033[" not in report.table(RESULTS)


def test_a_run_prints_only_the_table(serve: Callable[[Any], str], capfd: pytest.CaptureFixture[str]) -> None:
    """The suite's own issuer logs nothing (it used to print access-log lines with colour codes)."""
    issuer = f"http://127.0.0.1:{free_port()}"
    base = serve(BrokenVerifier(issuer=issuer))
    capfd.readouterr()
    assert main(["--verifier", f"{base}/auth", "--issuer", issuer, "--only", "JWT-RS-0,BIND-RS-10"]) == 0
    out, err = capfd.readouterr()
    assert err == ""
    assert "\033[" not in out and "HTTP/1.1" not in out and "GET /jwks" not in out
    assert out.splitlines()[0].startswith("ID ") and "total:" in out
