"""The authorization-server registry and the judges every §2 module uses.

Token-endpoint errors are judged on the JSON ``error`` member and the status (RFC 6749 §5.2;
RFC 9449 §5, §8), never on descriptions. Where an RFC requires a refusal but names no error code,
the case records the refusal at its RFC level and the exact code this project pins as a separate
``-pin`` result at level P (see :func:`refusal`).
"""

from __future__ import annotations

import json
from typing import Any

from ..minting import b64u_decode
from ..model import Recorder, Registry
from ..transport import JsonResponse

AS = Registry("AS", ("META", "TOK", "NONCE", "JKT", "RT", "INT", "MTLS", "FMT"))
case = AS.case

#: Error codes an AS may use for a refused DPoP / binding request when the RFC names none
#: (RFC 9449 §5, §10; the FAPI conformance suite accepts the same three).
REFUSALS = frozenset({"invalid_request", "invalid_grant", "invalid_dpop_proof"})


def claims_of(token: str) -> dict[str, Any] | None:
    """The payload of a JWT access token (None for opaque tokens)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        body = json.loads(b64u_decode(parts[1]))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def header_of(token: str) -> dict[str, Any]:
    try:
        return dict(json.loads(b64u_decode(token.split(".")[0])))
    except (ValueError, TypeError):
        return {}


def rec_result(rec: Recorder, sub: str, expected: str, res: JsonResponse, problem: str | None,
               level: str | None = None) -> None:
    rec.record(sub, expected, res.summary(), problem, level)


def no_store(res: JsonResponse) -> bool:
    return "no-store" in {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}


def expect_error(res: JsonResponse, status: set[int], errors: set[str] | frozenset[str]) -> str | None:
    """RFC 6749 §5.2 error response with one of ``errors``, and no token."""
    if res.status not in status:
        return f"status {res.status}, expected {'/'.join(map(str, sorted(status)))}"
    if res.error not in errors:
        return f"error={res.error}, expected {'|'.join(sorted(errors))}"
    if isinstance(res.body, dict) and "access_token" in res.body:
        return "a token was issued"
    return None


def refusal(rec: Recorder, sub: str, res: JsonResponse, *, pinned: str, status: set[int] | None = None,
            accepted: frozenset[str] = REFUSALS, level: str | None = None, pin_status: set[int] | None = None) -> None:
    """Record an RFC-level refusal (any of ``accepted``) and, as ``<sub>-pin`` at level P, the pinned code."""
    status = status or {400}
    rec_result(rec, sub, f"{'/'.join(map(str, sorted(status)))} {' | '.join(sorted(accepted))}", res,
               expect_error(res, status, accepted), level)
    pin = pin_status or status
    rec_result(rec, f"{sub}-pin" if sub else "-pin", f"{'/'.join(map(str, sorted(pin)))} {pinned} (profile pin)",
               res, expect_error(res, pin, {pinned}), "P")


def client_refusal(rec: Recorder, sub: str, res: JsonResponse) -> None:
    """RFC 6749 §5.2 ``invalid_client``: 400 or 401 (401 is a MUST only with an Authorization header);
    this profile pins 401 (RFC 8705 §2, RFC 7662 §2.3)."""
    refusal(rec, sub, res, pinned="invalid_client", status={400, 401}, accepted=frozenset({"invalid_client"}),
            pin_status={401})


def expect_token(res: JsonResponse, token_type: str, jkt: str | None = None,
                 x5t: str | None = None) -> str | None:
    """RFC 9449 §5 / RFC 8705 §3: 200, token_type, binding in the AT, Cache-Control no-store."""
    if res.status != 200 or not isinstance(res.body, dict) or "access_token" not in res.body:
        return f"status {res.status}, error={res.error}: no token"
    if str(res.body.get("token_type", "")).lower() != token_type.lower():
        return f"token_type={res.body.get('token_type')}, expected {token_type}"
    if not no_store(res):
        return "no Cache-Control: no-store"
    claims = claims_of(res.body["access_token"])
    if claims is not None:
        cnf = claims.get("cnf") or {}
        if jkt is not None and cnf.get("jkt") != jkt:
            return "AT cnf.jkt is not thumb(proof key)"
        if x5t is not None and cnf.get("x5t#S256") != x5t:
            return "AT cnf.x5t#S256 is not the certificate's"
        if jkt is None and x5t is None and cnf:
            return "AT carries cnf although unbound"
    return None
