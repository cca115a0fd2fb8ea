"""Spec §2.2: the token endpoint with DPoP (RFC 9449 §4.3, §5)."""

from __future__ import annotations

import secrets
import urllib.parse

from ..minting import REMOVE, b64u, b64u_decode, private_jwk
from ..model import Recorder, SkipCase
from .common import case, expect_error, expect_token, rec_result, refusal
from .context import AsContext


@case("TOK-AS-01", "9449 §5, §6.1", "M", "DPoP-bound token",
      sent='T-DPOP: (a) authorization_code for the public client; (b) client_credentials',
      expect='200, token_type DPoP, AT cnf.jkt = thumb(K1), no-store')
def tok_as_01(ctx: AsContext, rec: Recorder) -> None:
    jkt = ctx.fx.jkt("K1")
    public = ctx.clients.get("public")
    if public is not None:
        verifier = secrets.token_urlsafe(48)
        code = ctx.authorize(public, verifier)
        res = ctx.token(ctx.code_grant(public, verifier, code), client=public)
        rec_result(rec, "a", "200 DPoP, cnf.jkt=thumb(K1), no-store", res, expect_token(res, "DPoP", jkt=jkt))
    else:
        rec.skip("a", "needs an --as-client public:ID")
    c = ctx.clients.get("confidential") or ctx.clients.get("dpop-required")
    if c is None:
        rec.skip("b", "needs an --as-client confidential:ID:SECRET")
        return
    res = ctx.token(ctx.cc_form(), client=c)
    rec_result(rec, "b", "200 DPoP, cnf.jkt=thumb(K1), no-store", res, expect_token(res, "DPoP", jkt=jkt))


@case("TOK-AS-02", "9449 §5", "M", "no DPoP header: Bearer token",
      sent='client_credentials without a DPoP header',
      expect='200, token_type Bearer, no cnf')
def tok_as_02(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("confidential"), proofs=[])
    rec_result(rec, "", "200 Bearer, no cnf", res, expect_token(res, "Bearer"))


@case("TOK-AS-03", "9449 §5.2", "M", "DPoP-required client without a proof",
      sent='a client registered with dpop_bound_access_tokens, without a DPoP header',
      expect='400 refusal, no token; POLICY pin: invalid_request')
def tok_as_03(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("dpop-required"), proofs=[])
    refusal(rec, "", res, pinned="invalid_request")


def _bad_proofs(ctx: AsContext) -> list[tuple[str, str]]:
    url = ctx.endpoint("token_endpoint")
    good = ctx.proof(url)
    head, _, sig = good.rpartition(".")
    raw = bytearray(b64u_decode(sig))
    raw[3] ^= 1
    secret = b"conformance-hmac-secret-0123456789"
    return [
        ("a", f"{head}.{b64u(bytes(raw))}"),
        ("b", ctx.proof(url, alg="none")),
        ("c", ctx.proof(url, alg="HS256", jwk={"kty": "oct", "k": b64u(secret)}, sign_key=secret)),
        ("d", ctx.proof(url, header={"typ": "JWT"})),
        ("e", ctx.proof(url, jwk=private_jwk(ctx.fx.k1))),
        ("f", ctx.proof(url, htm="GET")),
        ("g", ctx.proof(htu=urllib.parse.urljoin(url, "/other"))),
        # A valid server nonce may stand in for iat freshness (RFC 9449 §4.3(11)), so the stale-iat
        # proofs never carry one (an AS that hands out nonces may then answer use_dpop_nonce).
        ("h1", ctx.proof(url, iat_offset=-3600, nonce=False)),
        ("h2", ctx.proof(url, iat_offset=3600, nonce=False)),
        ("i", ctx.proof(url, claims={"jti": REMOVE})),
    ]


@case("TOK-AS-04", "9449 §4.3, §5", "M", "invalid proofs at the token endpoint",
      sent=('one defect at a time: (a) bad signature; (b) alg none; (c) HS256; (d) typ JWT; (e) private jwk; (f) '
            'htm GET; (g) other htu; (h1/h2) iat ±1 h; (i) no jti'),
      expect='400 invalid_dpop_proof each (use_dpop_nonce also for h with --as-nonce)')
def tok_as_04(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    for sub, proof in _bad_proofs(ctx):
        res = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
        errors = {"invalid_dpop_proof"}
        if (ctx.nonce_mode or ctx.nonce) and sub in ("h1", "h2"):
            errors.add("use_dpop_nonce")
        rec_result(rec, sub, f"400 {' | '.join(sorted(errors))}", res, expect_error(res, {400}, errors))


@case("TOK-AS-05", "9449 §4.3(1)", "M", "two DPoP header fields",
      sent='two DPoP header fields',
      expect='400 invalid_dpop_proof')
def tok_as_05(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(), ctx.proof()], retry_nonce=False)
    rec_result(rec, "", "400 invalid_dpop_proof", res, expect_error(res, {400}, {"invalid_dpop_proof"}))


@case("TOK-AS-06", "9449 §11.1", "S", "replayed proof",
      sent='the same proof twice',
      expect='first 200, then a 400 refusal; POLICY pin: invalid_dpop_proof')
def tok_as_06(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    proof = ctx.proof()
    first = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
    if first.status != 200:
        rec_result(rec, "", "first 200, then a 400 refusal", first, "first use was not accepted")
        return
    res = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
    # RFC 9449 §11.1 asks for replay detection without naming the error; the profile pins the §5 code.
    refusal(rec, "", res, pinned="invalid_dpop_proof")


@case("TOK-AS-07", "FAPI2 5.3.2.1", "S", "clock skew and nbf/exp accepted",
      sent='(a) iat −10 s; (b) iat +8 s; (c) proof with nbf and exp',
      expect='200 DPoP each')
def tok_as_07(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    t0 = ctx.fx.token_claims()["iat"]
    for sub, kw in (("a", {"iat_offset": -10}), ("b", {"iat_offset": 8}),
                    ("c", {"claims": {"nbf": t0, "exp": t0 + 300}})):
        res = ctx.token(ctx.cc_form(), client=c, proof_kw=kw)
        rec_result(rec, sub, "200 DPoP", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("TOK-AS-08", "9449 §4.3(9); 8705 §5", "M", "htu names the mTLS alias actually called",
      sent='at the mTLS alias token endpoint: (a) htu = the alias; (b) htu = the plain token endpoint',
      expect='(a) 200 DPoP; (b) 400 invalid_dpop_proof')
def tok_as_08(ctx: AsContext, rec: Recorder) -> None:
    alias = (ctx.metadata.get("mtls_endpoint_aliases") or {}).get("token_endpoint")
    if not alias:
        raise SkipCase("AS metadata has no mtls_endpoint_aliases.token_endpoint")
    # A secret-authenticated client reaches the alias too (RFC 8705 §5); a tls client would usually
    # be certificate-bound, and certificate binding plus DPoP is refused (MTLS-AS-06).
    c = ctx.clients.get("confidential") or ctx.clients.get("dpop-required")
    if c is None:
        raise SkipCase("needs an --as-client confidential:ID:SECRET")
    res = ctx.token(ctx.cc_form(), client=c, url=alias, proof_kw={"htu": alias})
    rec_result(rec, "a", "200 DPoP", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))
    res = ctx.token(ctx.cc_form(), client=c, url=alias, proof_kw={"htu": ctx.endpoint("token_endpoint")})
    rec_result(rec, "b", "400 invalid_dpop_proof", res, expect_error(res, {400}, {"invalid_dpop_proof"}))


@case("TOK-AS-09", "9449 §4.2", "P", "ath at the token endpoint is ignored",
      sent='a token-endpoint proof that also has an `ath` claim',
      expect='200 DPoP (ignored)')
def tok_as_09(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    res = ctx.token(ctx.cc_form(), client=c, proof_kw={"claims": {"ath": b64u(b"\x00" * 32)}})
    rec_result(rec, "", "200 DPoP", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))
