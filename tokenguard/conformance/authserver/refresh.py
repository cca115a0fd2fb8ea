"""Spec §2.5: refresh tokens (RFC 9449 §5)."""

from __future__ import annotations

import secrets
from typing import Any

from ..model import Recorder, SkipCase
from .common import case, expect_token, rec_result, refusal
from .context import AsClient, AsContext


def _public_tokens(ctx: AsContext) -> tuple[AsClient, dict[str, Any]]:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v)
    res = ctx.token(ctx.code_grant(c, v, code), client=c)
    if res.status != 200 or not isinstance(res.body, dict) or "refresh_token" not in res.body:
        raise SkipCase(f"no refresh token for the public client ({res.summary()}; try --as-scope)")
    return c, res.body


@case("RT-AS-01", "9449 §5", "M", "public-client refresh with the bound key",
      sent='public client: refresh_token grant with a proof by K1',
      expect='200 DPoP, cnf.jkt = thumb(K1)')
def rt_as_01(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c)
    rec_result(rec, "", "200 DPoP, cnf.jkt=thumb(K1)", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("RT-AS-02", "9449 §5", "M", "public-client refresh with another key",
      sent='public client: refresh with a proof by K2',
      expect='400 refusal; POLICY pin: invalid_grant')
def rt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c,
                    proof_kw={"key": "K2"})
    refusal(rec, "", res, pinned="invalid_grant")


@case("RT-AS-03", "9449 §5", "M", "public-client refresh without a proof",
      sent='public client: refresh without a DPoP header',
      expect='400 refusal; POLICY pin: invalid_grant')
def rt_as_03(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c, proofs=[])
    refusal(rec, "", res, pinned="invalid_grant")


@case("RT-AS-04", "9449 §5", "M", "confidential-client refresh tokens are not key-bound",
      sent='confidential client: refresh with a proof by K2',
      expect='200 DPoP bound to K2 (confidential RTs are not key-bound)')
def rt_as_04(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    first = ctx.token(ctx.cc_form(), client=c)
    rt = first.body.get("refresh_token") if isinstance(first.body, dict) else None
    if not rt and "authorization_code" in (ctx.metadata.get("grant_types_supported") or []):
        v = secrets.token_urlsafe(48)
        first = ctx.token(ctx.code_grant(c, v, ctx.authorize(c, v)), client=c)
        rt = first.body.get("refresh_token") if isinstance(first.body, dict) else None
    if not rt:
        raise SkipCase("the AS issued the confidential client no refresh token "
                       "(client_credentials, authorization_code)")
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": rt}, client=c, proof_kw={"key": "K2"})
    rec_result(rec, "", "200 DPoP bound to K2", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K2")))
