"""Spec §2.4: authorization-code binding with dpop_jkt, and PAR (RFC 9449 §10, §10.1)."""

from __future__ import annotations

import hashlib
import secrets

from ..minting import b64u
from ..model import Recorder, SkipCase
from ..transport import JsonResponse
from .common import case, expect_error, expect_token, rec_result, refusal
from .context import AsClient, AsContext


@case("JKT-AS-01", "9449 §10", "M", "dpop_jkt then the same key",
      sent='authorize with dpop_jkt = thumb(K1), token request with a proof by K1',
      expect='200 DPoP, cnf.jkt = thumb(K1)')
def jkt_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c)
    rec_result(rec, "", "200 DPoP, cnf.jkt=thumb(K1)", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("JKT-AS-02", "9449 §10", "M", "dpop_jkt then another key",
      sent='authorize with dpop_jkt = thumb(K1), token proof by K2',
      expect='400 refusal, no token; POLICY pin: invalid_grant')
def jkt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c, proof_kw={"key": "K2"})
    refusal(rec, "", res, pinned="invalid_grant")


@case("JKT-AS-03", "9449 §10", "M", "dpop_jkt then no proof",
      sent='authorize with dpop_jkt, token request without a DPoP header',
      expect='400 refusal, no token; POLICY pin: invalid_grant')
def jkt_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c, proofs=[])
    refusal(rec, "", res, pinned="invalid_grant")


def _par(ctx: AsContext, c: AsClient, verifier: str, proof_key: str = "K1", **extra: str) -> JsonResponse:
    """RFC 9126 pushed authorization request with a DPoP header (RFC 9449 §10.1); nonce retry once."""
    url = ctx.endpoint("pushed_authorization_request_endpoint")
    form = {"response_type": "code", "client_id": c.client_id,
            "code_challenge": b64u(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
    if ctx.redirect_uri:
        form["redirect_uri"] = ctx.redirect_uri
    if ctx.scope:
        form["scope"] = ctx.scope
    form.update(extra)
    hdrs = [ctx.basic(c)] if c.secret else []
    res = ctx.http("POST", url, headers=[*hdrs, ("DPoP", ctx.proof(url, key=proof_key))], form=form)
    if res.error == "use_dpop_nonce" and res.all("DPoP-Nonce"):
        nonce = res.all("DPoP-Nonce")[-1]
        res = ctx.http("POST", url, form=form, headers=[
            *hdrs, ("DPoP", ctx.proof(url, key=proof_key, claims={"nonce": nonce}))])
    return res


@case("JKT-AS-04", "9449 §10.1", "M", "PAR with DPoP",
      sent=('(only with PAR) (a) PAR with a proof by K1, token proof by K2; (b) PAR with a proof by K1 and '
            'dpop_jkt = thumb(K2)'),
      expect='(a) 400 refusal (pin invalid_grant); (b) PAR 400 invalid_request or invalid_dpop_proof')
def jkt_as_04(ctx: AsContext, rec: Recorder) -> None:
    if not ctx.metadata.get("pushed_authorization_request_endpoint"):
        raise SkipCase("the AS does not implement PAR")
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    pushed = _par(ctx, c, v)
    request_uri = pushed.body.get("request_uri") if isinstance(pushed.body, dict) else None
    if pushed.status not in (200, 201) or not request_uri:
        rec.record("a", "PAR 201 with request_uri", pushed.summary(), "the pushed request was refused")
    else:
        code = ctx.authorize(c, v, request_uri=request_uri)
        res = ctx.token(ctx.code_grant(c, v, code), client=c, proof_kw={"key": "K2"})
        refusal(rec, "a", res, pinned="invalid_grant")
    res = _par(ctx, c, secrets.token_urlsafe(48), dpop_jkt=ctx.fx.jkt("K2"))
    rec_result(rec, "b", "PAR 400 invalid_request | invalid_dpop_proof", res,
         expect_error(res, {400}, {"invalid_request", "invalid_dpop_proof"}))
