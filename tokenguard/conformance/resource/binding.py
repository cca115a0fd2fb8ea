"""§1.4 (docs/conformance-cases.md): token binding and scheme downgrade (RFC 9449 §4.3(12), §6, §7.1, §7.2)."""

from __future__ import annotations

from .. import expect as X
from ..minting import (
    ath,
)
from ..model import Recorder
from .common import case, dproof, send_proof
from .context import RsContext


@case("BIND-RS-01", "9449 §4.3(12), §7", "M", "ath of another token",
      sent='`ath` is the hash of another token',
      expect='401·D(invalid_dpop_proof)')
def bind_rs_01(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    other = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, claims={"ath": ath(other)}), tok))


@case("BIND-RS-03", "9449 §4.3(12), §6, §7.1 Fig 16", "M", "proof key is not the bound key",
      sent='a valid proof by K2 (its own jwk, correct ath) with AT_D bound to K1',
      expect='401·D(invalid_token)')
def bind_rs_03(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.dpop_error(ctx.profile, "invalid_token"),
              lambda: send_proof(ctx, ctx.proof(tok, key="K2"), tok))


@case("BIND-RS-04", "9449 §7.2", "M", "DPoP-bound token as Bearer without proof",
      sent='`Authorization: Bearer <AT_D>`, no DPoP header',
      expect='401 with error="invalid_token" on the Bearer or the DPoP challenge')
def bind_rs_04(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.error_on_either(ctx.profile, "invalid_token"),
              lambda: ctx.send(authorization=f"Bearer {tok}"))


@case("BIND-RS-05", "9449 §7.2", "M", "DPoP-bound token as Bearer with a proof",
      sent='`Authorization: Bearer <AT_D>` and a valid DPoP proof',
      expect='401 with error="invalid_token"')
def bind_rs_05(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.error_on_either(ctx.profile, "invalid_token"),
              lambda: ctx.send(authorization=f"Bearer {tok}", dpop=ctx.proof(tok)))


@case("BIND-RS-06", "9449 §7.1", "M", "DPoP scheme without a proof",
      sent='`Authorization: DPoP <AT_D>` without a DPoP header',
      expect='400*·D(invalid_request)')
def bind_rs_06(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.rfc400_dpop(ctx.profile), lambda: ctx.send(authorization=f"DPoP {tok}"))


@case("BIND-RS-07", "9449 §7.1", "S", "DPoP scheme with an unbound token",
      sent='`Authorization: DPoP <AT_B>` (no cnf) with a valid proof',
      expect='401·D(invalid_token)')
def bind_rs_07(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at()
    ctx.check(rec, "", X.dpop_error(ctx.profile, "invalid_token"),
              lambda: send_proof(ctx, ctx.proof(tok), tok))


@case("BIND-RS-08", "9449 §7.2", "P", "Bearer token with a DPoP header",
      sent='`Authorization: Bearer <AT_B>` plus a valid DPoP header',
      expect='400*·B(invalid_request)')
def bind_rs_08(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at()
    ctx.check(rec, "", X.rfc400_bearer(ctx.profile),
              lambda: ctx.send(authorization=f"Bearer {tok}", dpop=ctx.proof(tok)))


@case("BIND-RS-09", "RFC 7800 §3 (fail closed)", "P", "ambiguous or unknown cnf",
      sent='token whose cnf is (a) both jkt and x5t#S256; (b) only an unknown member (cnf.jwk)',
      expect='401 with error="invalid_token" (fail closed)')
def bind_rs_09(ctx: RsContext, rec: Recorder) -> None:
    e = X.error_on_either(ctx.profile, "invalid_token")
    both = {"jkt": ctx.fx.jkt("K1"), "x5t#S256": ctx.fx.cert_thumb()}
    tok_a = ctx.at(cnf=both)
    ctx.check(rec, "a", e, lambda: send_proof(ctx, ctx.proof(tok_a), tok_a, cert="CERT1"))
    tok_b = ctx.at(cnf={"jwk": ctx.jwk("K1")})
    ctx.check(rec, "b", e, lambda: ctx.send(authorization=f"Bearer {tok_b}"))


@case("BIND-RS-10", "9449 §6.2; RFC 7662 §2.2", "M", "introspected DPoP binding",
      sent=('opaque token introspected as DPoP-bound: (a) B-DPOP shape; (b) sent as Bearer; (c) token_type Bearer'
            ' but cnf.jkt, sent as Bearer'),
      expect='(a) 200; (b), (c) 401 invalid_token (cnf decides)')
def bind_rs_10(ctx: RsContext, rec: Recorder) -> None:
    cnf = {"jkt": ctx.fx.jkt("K1")}
    tok_a = ctx.opaque(ctx.active(token_type="DPoP", cnf=cnf))
    ctx.check(rec, "a", X.ok(), lambda: send_proof(ctx, ctx.proof(tok_a), tok_a))
    tok_b = ctx.opaque(ctx.active(token_type="DPoP", cnf=cnf))
    ctx.check(rec, "b", X.error_on_either(ctx.profile, "invalid_token"),
              lambda: ctx.send(authorization=f"Bearer {tok_b}"))
    tok_c = ctx.opaque(ctx.active(token_type="Bearer", cnf=cnf))
    ctx.check(rec, "c", X.error_on_either(ctx.profile, "invalid_token"),
              lambda: ctx.send(authorization=f"Bearer {tok_c}"))
