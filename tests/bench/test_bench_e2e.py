"""``make bench-e2e`` never publishes a row with a non-2xx answer (issue 11: a granian row was reported at
4,691 req/s with 7,275 non-2xx answers after its proofs ran out): such a row is refused and left out of
every ratio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import bench_e2e  # noqa: E402
import peer_oidc_provider as peer  # noqa: E402

WRK = """Running 10s test @ http://127.0.0.1:40000/resource
  2 threads and 16 connections
  Latency Distribution
     50%    3.10ms
     99%   12.00ms
  46910 requests in 10.00s, 5.10MB read
{extra}Requests/sec:   4691.00
PEER bad={bad} exhausted={exhausted} sent=46910 first_bad={first}
"""


def parsed(bad: int = 0, exhausted: int = 0, wrk_non2xx: int = 0, sockerr: str = "") -> dict[str, Any]:
    extra = f"  Non-2xx or 3xx responses: {wrk_non2xx}\n" if wrk_non2xx else ""
    extra += f"  Socket errors: {sockerr}\n" if sockerr else ""
    return peer.parse_wrk(WRK.format(extra=extra, bad=bad, exhausted=exhausted,
                                     first="401 DPoP error=\"invalid_dpop_proof\"" if bad else ""))


def test_rows_with_any_failed_answer_are_refused() -> None:
    assert peer.row_valid(parsed())
    assert not peer.row_valid(parsed(bad=7275, exhausted=7275, wrk_non2xx=7275))  # the granian row
    assert not peer.row_valid(parsed(bad=1))  # one 401 is enough
    assert not peer.row_valid(parsed(exhausted=3))  # proofs ran out: requests were replays
    assert not peer.row_valid(parsed(wrk_non2xx=2))
    assert not peer.row_valid(parsed(sockerr="connect 0, read 1, write 0, timeout 0"))
    assert not peer.row_valid({**parsed(), "non2xx": -1})  # the Lua summary is missing: nothing is known


def row(label: str, rps: float, valid: bool = True, p99: float = 10.0) -> dict[str, Any]:
    return {"label": label, "rps": rps, "p99": p99, "conns": 16, "run": 1, "valid": valid}


def test_ratios_use_valid_rows_only() -> None:
    rows = [row("(1a) naive", 1000), row("(1b) empty /auth", 8000, p99=5.0), row("ceiling: bare", 4000),
            row("peer: oidc-provider x1", 500), row("peer: oidc-provider x2", 300),
            row("(2) tokenguard, embedded", 2000, p99=20.0), row("(2) tokenguard, redis", 4691, valid=False)]
    table = {e["row"]: e for e in bench_e2e.ratios(rows)}
    embedded = table["(2) tokenguard, embedded"]
    assert embedded["(2)/(1a)"] == (2.0, 1.5) and embedded["(2)/ceiling"] == (0.5, 0.6)
    assert embedded["(2)/peer"] == (4.0, 4.0)  # against the fastest peer layout
    assert embedded["p99 (2)/(1b)"] == (4.0, -1.5)
    refused = table["(2) tokenguard, redis"]
    assert refused["valid"] is False and "(2)/(1a)" not in refused
    rows[0]["valid"] = False  # an invalid baseline is no baseline
    assert {e["row"]: e for e in bench_e2e.ratios(rows)}["(2) tokenguard, embedded"]["(2)/(1a)"] is None
