"""§1.6 (docs/conformance-cases.md): JWT access-token validation (RFC 9068 §4), including key rotation (run last)."""

from __future__ import annotations

import base64
import time

from .. import expect as X
from ..minting import (
    REMOVE,
    b64u,
    b64u_decode,
    compact_jws,
    json_bytes,
    now,
)
from ..model import Recorder, SkipCase
from .common import b_invalid, case
from .context import RsContext


@case("JWT-RS-01", "9068 §2.2, §4", "M", "expired or exp missing",
      sent='B-BEARER with (a) `exp` an hour ago; (b) no `exp`',
      expect='401·B(invalid_token)')
def jwt_rs_01(ctx: RsContext, rec: Recorder) -> None:
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(exp=now() - 3600)))
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(exp=REMOVE)))


@case("JWT-RS-02", "9068 §4; RFC 7519 §4.1.5", "M", "leeway and nbf",
      sent='(a) `exp` half the leeway ago; (b) `nbf` an hour ahead',
      expect='(a) 200; (b) 401·B(invalid_token)')
def jwt_rs_02(ctx: RsContext, rec: Recorder) -> None:
    if ctx.knobs.leeway >= 2:
        ctx.check(rec, "a", X.ok(), lambda: ctx.b_bearer(ctx.at(exp=now() - ctx.knobs.leeway // 2)))
    else:
        rec.skip("a", "verifier leeway below 2 s (--leeway)")
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(nbf=now() + 3600)))


@case("JWT-RS-03", "9068 §4", "M", "issuer must match exactly",
      sent='`iss` (a) another issuer; (b) the issuer with a trailing slash toggled',
      expect='401·B(invalid_token) each')
def jwt_rs_03(ctx: RsContext, rec: Recorder) -> None:
    iss = ctx.fx.issuer
    variant = iss[:-1] if iss.endswith("/") else iss + "/"
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(iss="https://evil.test")))
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(iss=variant)))


@case("JWT-RS-04", "9068 §4", "M", "audience",
      sent='`aud` (a) another audience; (b) absent; (c) an array containing this RS',
      expect='(a), (b) 401·B(invalid_token); (c) 200')
def jwt_rs_04(ctx: RsContext, rec: Recorder) -> None:
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(aud="https://other.test")))
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(aud=REMOVE)))
    ctx.check(rec, "c", X.ok(), lambda: ctx.b_bearer(ctx.at(aud=["x", ctx.fx.audience])))


@case("JWT-RS-05", "9068 §4, §5", "M", "access-token typ",
      sent='token `typ` (a) `JWT`; (b) absent; (c) an OIDC ID token; (d) `application/at+jwt`; (e) `at+JWT`',
      expect='(a)–(c) 401·B(invalid_token); (d), (e) 200')
def jwt_rs_05(ctx: RsContext, rec: Recorder) -> None:
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(header={"typ": "JWT"})))
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(header={"typ": REMOVE})))
    t0 = now()
    id_token = compact_jws({"typ": "JWT", "alg": "RS256", "kid": ctx.fx.kid("as-1")},
                           {"iss": ctx.fx.issuer, "sub": "u1", "aud": "c1", "iat": t0, "exp": t0 + 600,
                            "auth_time": t0, "nonce": "n-0S6_WzA2Mj"}, ctx.fx.as1, "RS256")
    ctx.check(rec, "c", b_invalid(ctx), lambda: ctx.b_bearer(id_token))
    ctx.check(rec, "d", X.ok(), lambda: ctx.b_bearer(ctx.at(header={"typ": "application/at+jwt"})))
    ctx.check(rec, "e", X.ok(), lambda: ctx.b_bearer(ctx.at(header={"typ": "at+JWT"})))


@case("JWT-RS-06", "9068 §4", "M", "alg none",
      sent='token with `alg: none` and an empty signature',
      expect='401·B(invalid_token)')
def jwt_rs_06(ctx: RsContext, rec: Recorder) -> None:
    ctx.check(rec, "", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(header={"alg": "none"})))


@case("JWT-RS-08", "9068 §4", "M", "bad signature",
      sent='(a) payload altered after signing; (b) signed by an attacker key under `kid: as-1`',
      expect='401·B(invalid_token)')
def jwt_rs_08(ctx: RsContext, rec: Recorder) -> None:
    h, _, s = ctx.at().split(".")
    altered = b64u(json_bytes(ctx.fx.token_claims(scope="read write admin")))
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(f"{h}.{altered}.{s}"))
    forged = {"kid": ctx.fx.kid("as-1")}
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(signer="attacker", header=forged)))


@case("JWT-RS-12", "9068 §2.2, §4", "M", "malformed tokens and missing required claims",
      sent='(a) 2-segment token; (b) non-base64url signature; (c) a JWE; (d) no `sub` / `client_id` / `iat` / `jti`',
      expect='401·B(invalid_token) each ((d) is POLICY)')
def jwt_rs_12(ctx: RsContext, rec: Recorder) -> None:
    h, p, s = ctx.at().split(".")
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(f"{h}.{p}"))
    bad = base64.b64encode(b64u_decode(s)).decode("ascii").rstrip("=") + "+/"
    ctx.check(rec, "b", b_invalid(ctx), lambda: ctx.b_bearer(f"{h}.{p}.{bad}"))
    jwe_header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "typ": "at+jwt", "kid": ctx.fx.kid("as-1")}
    jwe = ".".join(b64u(x) for x in (json_bytes(jwe_header), b"k" * 256, b"i" * 12, b"c" * 64, b"t" * 16))
    ctx.check(rec, "c", b_invalid(ctx), lambda: ctx.b_bearer(jwe))
    for i, claim in enumerate(("sub", "client_id", "iat", "jti"), start=1):
        ctx.check(rec, f"d{i}", b_invalid(ctx), lambda claim=claim: ctx.b_bearer(ctx.at(**{claim: REMOVE})),
                  level="P")


@case("JWT-RS-13", "RFC 7662 §2.2; fail closed", "M", "inactive token; introspection unavailable",
      sent='opaque token: (a) introspection says active:false; (b) the introspection endpoint fails (503)',
      expect='(a) 401·B(invalid_token); (b) never 200')
def jwt_rs_13(ctx: RsContext, rec: Recorder) -> None:
    tok_a = ctx.opaque({"active": False})
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(tok_a))
    tok_b = ctx.opaque(None, status=503)
    ctx.check(rec, "b", X.not_allowed(), lambda: ctx.b_bearer(tok_b))



@case("JWT-RS-09", "9068 §4 (keys from jwks_uri)", "S", "signing-key rotation: one JWKS re-fetch", order=100,
      sent='the issuer rotates: token signed by `as-2`, which the JWKS serves only from now on',
      expect="200 after exactly one JWKS re-fetch (waiting at most the verifier's refresh cool-down for it)")
def jwt_rs_09(ctx: RsContext, rec: Recorder) -> None:
    if ctx.issuer is None:
        raise SkipCase("needs the suite's own issuer (--issuer)")
    warm = ctx.b_bearer()
    if warm.status != 200:
        rec.record("", "200 with exactly 1 JWKS fetch", warm.summary(), "baseline bearer was not accepted")
        return
    before = ctx.issuer.jwks_fetches()
    ctx.issuer.rotate()
    resp = ctx.b_bearer(ctx.at(signer="as-2"))
    # A verifier refreshed its keys moments ago (an earlier run, the pre-flight) may hold off the
    # next refresh for its cool-down: wait for the first fetch that long, then judge.
    deadline = time.monotonic() + ctx.knobs.jwks_cooldown + 5
    while resp.status != 200 and ctx.issuer.jwks_fetches() == before and time.monotonic() < deadline:
        time.sleep(1)
        resp = ctx.b_bearer(ctx.at(signer="as-2"))
    fetched = ctx.issuer.jwks_fetches() - before
    problem = X.ok().judge(resp)
    if problem is None and fetched != 1:
        problem = f"{fetched} JWKS fetches, expected exactly 1"
    rec.record("", "200 with exactly 1 JWKS fetch", f"{resp.summary()} jwks_fetches={fetched}", problem)


@case("JWT-RS-10", "robustness (refresh cool-down)", "P", "unknown kid does not flood the JWKS endpoint",
      order=101,
      sent='(a) `kid: nope`; (b) 20 tokens with unknown kids in a row',
      expect='401 each; at most one JWKS fetch in the cool-down')
def jwt_rs_10(ctx: RsContext, rec: Recorder) -> None:
    if ctx.issuer is None:
        raise SkipCase("needs the suite's own issuer (--issuer)")
    ctx.check(rec, "a", b_invalid(ctx), lambda: ctx.b_bearer(ctx.at(header={"kid": "nope"})))
    before = ctx.issuer.jwks_fetches()
    statuses = [ctx.b_bearer(ctx.at(header={"kid": f"nope-{i}"})).status for i in range(20)]
    fetched = ctx.issuer.jwks_fetches() - before
    problem = None
    if any(s != 401 for s in statuses):
        problem = f"statuses {sorted(set(statuses))}, expected all 401"
    elif fetched > 1:
        problem = f"{fetched} JWKS fetches for 20 unknown kids, expected ≤1"
    rec.record("b", "20×401 with ≤1 JWKS fetch", f"401×{statuses.count(401)} jwks_fetches={fetched}", problem)
