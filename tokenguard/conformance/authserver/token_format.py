"""Spec §2.8: issued-token format and error hygiene (RFC 9068 §2; RFC 6749 §5.2)."""

from __future__ import annotations

from ..expect import ERROR_CHARS_RE
from ..minting import verify_compact
from ..model import Recorder, SkipCase
from .common import case, claims_of, expect_error, header_of, rec_result
from .context import AsContext


@case("FMT-AS-01", "9068 §2.1, §2.2, §4", "M", "issued access-token format",
      sent='decode an issued JWT access token',
      expect=('typ at+jwt, asymmetric alg, verifies with jwks_uri, RFC 9068 claims (POLICY when the AT is a JWT but'
              ' not at+jwt)'))
def fmt_as_01(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = res.body.get("access_token") if isinstance(res.body, dict) else None
    if not at:
        raise SkipCase(f"no token issued ({res.summary()})")
    claims = claims_of(at)
    if claims is None:
        raise SkipCase("the client's access tokens are opaque")
    hdr = header_of(at)
    got = f"typ={hdr.get('typ')} alg={hdr.get('alg')}"
    if str(hdr.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        # RFC 9068 binds only tokens that claim its profile: an AS may issue other JWTs. This
        # project's profile wants RFC 9068 access tokens (the verifier checks typ, R-13).
        rec.record("", "typ at+jwt (profile: RFC 9068 access tokens)", got, f"typ={hdr.get('typ')}", "P")
        return
    problem = None
    if str(hdr.get("alg", "none")) == "none" or str(hdr.get("alg")).startswith("HS"):
        problem = f"alg={hdr.get('alg')}"
    else:
        missing = [c for c in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti") if c not in claims]
        problem = f"missing claims {missing}" if missing else verify_compact(at, ctx.jwks())
    rec.record("", "asymmetric alg, verifies with jwks_uri, RFC 9068 claims", got, problem)


@case("FMT-AS-02", "RFC 6749 §5.2", "M", "error responses",
      sent='(a) client_secret_basic with a wrong secret; (b) that error response',
      expect='(a) 401 invalid_client + WWW-Authenticate Basic; (b) JSON, no-store, RFC 6749 charset')
def fmt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    hdrs = [ctx.basic(c, secret="wrong-secret")]
    res = ctx.http("POST", ctx.endpoint("token_endpoint"), headers=hdrs, form=ctx.cc_form())
    problem = expect_error(res, {401}, {"invalid_client"})
    if problem is None and not any(v.lower().startswith("basic") for v in res.all("WWW-Authenticate")):
        problem = "no WWW-Authenticate: Basic"
    rec_result(rec, "a", "401 invalid_client + WWW-Authenticate Basic", res, problem)
    problem = None
    body = res.body if isinstance(res.body, dict) else None
    cc = {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}
    if body is None:
        problem = "error body is not JSON"
    elif "no-store" not in cc:
        problem = "no Cache-Control: no-store"
    elif any(not ERROR_CHARS_RE.match(str(body.get(k, ""))) for k in ("error", "error_description")):
        problem = "error/error_description outside %x20-21 / %x23-5B / %x5D-7E"
    rec_result(rec, "b", "JSON error, no-store, RFC 6749 charset", res, problem)
