"""§2.6 (docs/conformance-cases.md): introspection (RFC 7662; RFC 9449 §6.2; RFC 8705 §3.2)."""

from __future__ import annotations

import secrets

from ..model import Recorder, SkipCase
from ..transport import JsonResponse
from .common import case, claims_of, expect_error, rec_result, refusal
from .context import AsClient, AsContext


def _introspector(ctx: AsContext) -> AsClient:
    c = ctx.clients.get("introspect") or ctx.clients.get("confidential")
    if c is None or not c.secret:
        raise SkipCase("needs an --as-client introspect:ID:SECRET (or confidential)")
    return c


def _introspect(ctx: AsContext, token: str, client: AsClient | None,
                form: dict[str, str] | None = None) -> JsonResponse:
    hdrs = [ctx.basic(client)] if client else []
    return ctx.http("POST", ctx.endpoint("introspection_endpoint"), headers=hdrs,
                    form={"token": token} if form is None else form)


@case("INT-AS-01", "9449 §6.2", "M", "introspecting a DPoP token",
      sent='the RS introspects a DPoP-bound token',
      expect='200 active, top-level cnf.jkt, token_type DPoP if present')
def int_as_01(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    tok = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        raise SkipCase(f"could not get a DPoP token ({tok.summary()})")
    res = _introspect(ctx, at, rs)
    b = res.body if isinstance(res.body, dict) else {}
    problem = None
    if res.status != 200 or b.get("active") is not True:
        problem = f"status {res.status}, active={b.get('active')}"
    elif (b.get("cnf") or {}).get("jkt") != ctx.fx.jkt("K1"):
        problem = "top-level cnf.jkt missing or wrong"
    elif "token_type" in b and b["token_type"] != "DPoP":
        problem = f"token_type={b['token_type']}"
    rec.record("", "200 active, cnf.jkt, token_type DPoP", f"{res.status}", problem)


@case("INT-AS-02", "8705 §3.2", "M", "introspecting an mTLS-bound token",
      sent='the RS introspects a certificate-bound token',
      expect="200 with cnf.x5t#S256 equal to the AT's")
def int_as_02(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    c = ctx.clients.get("cert-bound") or ctx.clients.get("tls")
    if c is None or not ctx.cert_for(c.role):
        raise SkipCase("needs an --as-client cert-bound:ID and --as-tls-cert/--as-tls-key")
    tok = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        raise SkipCase(f"could not get a certificate-bound token ({tok.summary()})")
    res = _introspect(ctx, at, rs)
    b = res.body if isinstance(res.body, dict) else {}
    want = (claims_of(at) or {}).get("cnf", {}).get("x5t#S256")
    got = (b.get("cnf") or {}).get("x5t#S256")
    problem = None if res.status == 200 and got and (want is None or got == want) else "cnf.x5t#S256 missing or differs"
    rec.record("", "200 cnf.x5t#S256 equal to the AT's", f"{res.status}", problem)


@case("INT-AS-03", "7662 §2.2, §2.3", "M", "inactive tokens",
      sent='introspect an unknown token',
      expect='200 active:false; SHOULD: no other members')
def int_as_03(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    res = _introspect(ctx, "unknown-" + secrets.token_urlsafe(16), rs)
    active = res.member("active")
    rec.record("", '200 {"active":false}', f"{res.status} active={active}",
               None if res.status == 200 and active is False else "not 200 with active:false")
    # RFC 7662 §2.2: the AS SHOULD NOT say more about an inactive token.
    extra = sorted(set(res.body) - {"active"}) if isinstance(res.body, dict) else []
    rec.record("-pin", 'exactly {"active":false}', f"{len(extra)} other members",
               f"also {', '.join(extra)}" if extra else None, "S")


@case("INT-AS-04", "7662 §2.1, §2.3; 9449 §6.2", "M", "introspection request errors",
      sent='(a) no RS authentication; (b) no token parameter; (c) no DPoP header from the RS',
      expect=('(a) 400/401 invalid_client or invalid_request (POLICY pin: 401 invalid_client); (b) 400 '
              'invalid_request; (c) 200 active'))
def int_as_04(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    res = _introspect(ctx, "x", None)
    # RFC 6749 §5.2 names invalid_client for "no client authentication included", yet a missing
    # credential is also a malformed request; either refusal meets RFC 7662 §2.1, 401 is the pin.
    refusal(rec, "a", res, pinned="invalid_client", status={400, 401},
            accepted=frozenset({"invalid_client", "invalid_request"}), pin_status={401})
    res = _introspect(ctx, "x", rs, form={})
    rec_result(rec, "b", "400 invalid_request", res, expect_error(res, {400}, {"invalid_request"}))
    tok = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        rec.skip("c", "could not get a DPoP token")
        return
    res = _introspect(ctx, at, rs)
    active = isinstance(res.body, dict) and res.body.get("active") is True
    rec.record("c", "200 active without a DPoP header", res.summary(), None if active else "not active")
