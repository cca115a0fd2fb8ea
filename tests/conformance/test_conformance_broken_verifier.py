"""The suite fails exactly the cases a deliberately broken verifier deserves (issue 6 "done when")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .broken_verifier import BrokenVerifier
from .conftest import failed, free_port, run_suite

HTU_CASES = {"DPOP-RS-24", "DPOP-RS-25a", "DPOP-RS-25b", "DPOP-RS-25c", "DPOP-RS-25d",
             "DPOP-RS-28a", "DPOP-RS-28c", "DPOP-RS-29b"}
REPLAY_CASES = {"DPOP-RS-34", "DPOP-RS-35"}


def _run(serve: Callable[[Any], str], **flags: bool) -> tuple[list[Any], set[str]]:
    issuer = f"http://127.0.0.1:{free_port()}"
    base = serve(BrokenVerifier(issuer=issuer, **flags))
    results = run_suite("--verifier", f"{base}/auth", "--issuer", issuer,
                        "--nonce-resource", "https://api.test/nonce")
    return results, failed(results)


def test_sound_verifier_passes_every_case(serve: Callable[[Any], str]) -> None:
    results, fails = _run(serve)
    assert fails == set(), [(r.id, r.got, r.reason) for r in results if r.outcome == "fail"]
    skipped = {r.id for r in results if r.outcome == "skip"}
    # Only what a black box in auth_request mode cannot do (and NONCE-RS-04 without an AS) skips.
    assert skipped == {"MTLS-RS-10", "NONCE-RS-04"}


@pytest.mark.parametrize(("flags", "expected"), [
    ({"replay_check": False}, REPLAY_CASES),
    ({"htu_check": False}, HTU_CASES),
], ids=["replay-off", "htu-off"])
def test_broken_check_fails_exactly_its_cases(serve: Callable[[Any], str], flags: dict[str, bool],
                                              expected: set[str]) -> None:
    results, fails = _run(serve, **flags)
    assert fails == expected, [(r.id, r.got, r.reason) for r in results if r.outcome == "fail"]
