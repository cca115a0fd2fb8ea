"""Spec §1.2, first half: the DPoP proof as a JWS — form, typ, alg, key, signature (RFC 9449 §4.2, §4.3(1)–(7))."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .. import expect as X
from ..minting import (
    REMOVE,
    ath,
    b64u,
    b64u_decode,
    compact_jws,
    json_bytes,
    now,
    private_jwk,
    public_jwk,
)
from ..model import Recorder
from .common import case, dproof, send_proof
from .context import RsContext


@case("DPOP-RS-01", "9449 §4.3(1)", "M", "two DPoP header fields",
      sent='B-DPOP with two DPoP header fields, both valid proofs',
      expect='401·D(invalid_dpop_proof)')
def dpop_rs_01(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: ctx.send(
        authorization=f"DPoP {tok}", dpop=[ctx.proof(tok), ctx.proof(tok)]))


@case("DPOP-RS-03", "9449 §4.3(2)", "M", "proof is not a compact JWS",
      sent='proof is (a) `abc`; (b) header.payload without signature; (c) a 5-part JWE; (d) JWS JSON serialization',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_03(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    good = ctx.proof(tok)
    h, p, s = good.split(".")
    jwe = ".".join(b64u(x) for x in (json_bytes({"alg": "RSA-OAEP-256", "enc": "A256GCM",
                                                   "typ": "dpop+jwt"}), b"k" * 32, b"i" * 12,
                                       b"c" * 40, b"t" * 16))
    json_ser = json.dumps({"protected": h, "payload": p, "signature": s}, separators=(",", ":"))
    for sub, value in (("a", "abc"), ("b", f"{h}.{p}"), ("c", jwe), ("d", json_ser)):
        ctx.check(rec, sub, dproof(ctx), lambda value=value: send_proof(ctx, value, tok))


@case("DPOP-RS-04", "9449 §4.3(2); RFC 7515 §7.1", "M", "undecodable proof segments",
      sent='(a) a segment in standard base64 with `+`, `/`, `=`; (b) header is a JSON array; (c) payload is not JSON',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_04(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    htu = ctx.without_query(ctx.url())
    # (a) a valid signature re-encoded in the standard alphabet with padding ('+', '/', '=').
    for _ in range(64):
        proof = ctx.proof(tok)
        head, _, sig = proof.rpartition(".")
        std = base64.b64encode(b64u_decode(sig)).decode("ascii") + "=="
        if "+" in std or "/" in std:
            break
    bad_a = f"{head}.{std}"
    claims = {"jti": "j" + str(time.time_ns()), "htm": "GET", "htu": htu, "iat": now(), "ath": ath(tok)}
    hdr = {"typ": "dpop+jwt", "alg": "ES256", "jwk": ctx.jwk("K1")}
    bad_b = compact_jws(json_bytes([hdr]), claims, ctx.fx.k1, "ES256")
    bad_c = compact_jws(hdr, b"not json {", ctx.fx.k1, "ES256")
    for sub, value in (("a", bad_a), ("b", bad_b), ("c", bad_c)):
        ctx.check(rec, sub, dproof(ctx), lambda value=value: send_proof(ctx, value, tok))


@case("DPOP-RS-05", "9449 §4.2, §4.3(3)", "M", "required claim missing",
      sent='proof without (a) `jti`; (b) `htm`; (c) `htu`; (d) `iat`',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_05(ctx: RsContext, rec: Recorder) -> None:
    for sub, claim in (("a", "jti"), ("b", "htm"), ("c", "htu"), ("d", "iat")):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, dproof(ctx), lambda tok=tok, claim=claim: send_proof(
            ctx, ctx.proof(tok, claims={claim: REMOVE}), tok))


@case("DPOP-RS-06", "9449 §4.2, §7, §4.3(3)", "M", "proof without ath",
      sent='proof without `ath` although an access token is sent',
      expect='401·D(invalid_dpop_proof)')
def dpop_rs_06(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(None), tok))


@case("DPOP-RS-07", "9449 §4.3(4), §11.5", "M", "wrong typ",
      sent='proof `typ` (a) absent; (b) `JWT`; (c) `dpop+jwt+wrongyousee`; (d) `at+jwt`',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_07(ctx: RsContext, rec: Recorder) -> None:
    for sub, typ in (("a", REMOVE), ("b", "JWT"), ("c", "dpop+jwt+wrongyousee"), ("d", "at+jwt")):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, dproof(ctx), lambda tok=tok, typ=typ: send_proof(
            ctx, ctx.proof(tok, header={"typ": typ}), tok))


@case("DPOP-RS-08", "RFC 7515 §4.1.9", "P", "typ media-type variants accepted",
      sent='proof `typ` (a) `application/dpop+jwt`; (b) `DPoP+JWT`',
      expect='200 both (RFC 7515 §4.1.9 media-type rules)')
def dpop_rs_08(ctx: RsContext, rec: Recorder) -> None:
    for sub, typ in (("a", "application/dpop+jwt"), ("b", "DPoP+JWT")):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, X.ok(), lambda tok=tok, typ=typ: send_proof(
            ctx, ctx.proof(tok, header={"typ": typ}), tok))


@case("DPOP-RS-09", "9449 §4.2, §4.3(5), §11.6", "M", "alg none",
      sent='proof with `alg: none` and an empty signature',
      expect='401·D(invalid_dpop_proof); algs never lists none')
def dpop_rs_09(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, alg="none"), tok))


@case("DPOP-RS-10", "9449 §4.2, §4.3(5)", "M", "MAC alg with a symmetric jwk",
      sent='proof with `alg: HS256`, a symmetric `oct` jwk and a correct HMAC (token bound to that jwk)',
      expect='401·D(invalid_dpop_proof)')
def dpop_rs_10(ctx: RsContext, rec: Recorder) -> None:
    secret = b"conformance-hmac-secret-0123456789"
    jwk = {"kty": "oct", "k": b64u(secret)}
    tok = ctx.at_for_key(jwk)
    proof = ctx.proof(tok, alg="HS256", jwk=jwk, sign_key=secret, sign_alg="HS256")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, proof, tok))


@case("DPOP-RS-11", "9449 §4.3(5)", "M", "alg outside the allow-list",
      sent='(a) RS256 proof correctly signed with an RSA key; (b) ES256K; (c) no `alg` member',
      expect='401·D(invalid_dpop_proof) each, algs unchanged (RS256 is skipped when --algs lists it)')
def dpop_rs_11(ctx: RsContext, rec: Recorder) -> None:
    # "Outside the allow-list" is relative to the verifier's algs (--algs): an alg it lists is skipped.
    kr = ctx.jwk("KR")
    tok_a = ctx.at_for_key(kr)
    if "RS256" in ctx.profile.algs:
        rec.skip("a", "RS256 is in the verifier's allow-list (--algs)")
    else:
        ctx.check(rec, "a", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok_a, key="KR", alg="RS256"), tok_a))
    k256k = ec.generate_private_key(ec.SECP256K1())
    jwk_b = public_jwk(k256k)
    tok_b = ctx.at_for_key(jwk_b)
    if "ES256K" in ctx.profile.algs:
        rec.skip("b", "ES256K is in the verifier's allow-list (--algs)")
    else:
        ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
            ctx, ctx.proof(tok_b, alg="ES256K", jwk=jwk_b, sign_key=k256k), tok_b))
    tok_c = ctx.at("jkt")
    ctx.check(rec, "c", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_c, header={"alg": REMOVE}, sign_alg="ES256"), tok_c))


@case("DPOP-RS-12", "9449 §4.3(5), (6)", "M", "alg does not match the jwk",
      sent='(a) `ES256` with an RSA jwk; (b) `ES384` with a P-256 jwk; (c) `EdDSA` with an EC jwk',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_12(ctx: RsContext, rec: Recorder) -> None:
    kr = ctx.jwk("KR")
    tok_a = ctx.at_for_key(kr)
    ctx.check(rec, "a", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_a, key="KR", alg="ES256", sign_alg="PS256"), tok_a))
    tok = ctx.at("jkt")
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok, alg="ES384", sign_alg="ES384"), tok))
    tok_c = ctx.at("jkt")
    ctx.check(rec, "c", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_c, alg="EdDSA", sign_alg="ES256"), tok_c))


@case("DPOP-RS-13", "9449 §4.3(6)", "M", "signature does not verify",
      sent='(a) one bit of the signature flipped; (b) signed with K2 while `jwk` is K1',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_13(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    head, _, sig = ctx.proof(tok).rpartition(".")
    raw = bytearray(b64u_decode(sig))
    raw[5] ^= 0x01
    flipped = f"{head}.{b64u(bytes(raw))}"
    ctx.check(rec, "a", dproof(ctx), lambda: send_proof(ctx, flipped, tok))
    tok_b = ctx.at("jkt")
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_b, sign_key=ctx.fx.k2), tok_b))


@case("DPOP-RS-15", "9449 §4.2, §4.3(7)", "M", "private key in jwk",
      sent='`jwk` with private members: (a) EC `d`; (b) RSA `d`, `p`, `q`, `dp`, `dq`, `qi`',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_15(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "a", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok, jwk=private_jwk(ctx.fx.k1)), tok))
    tok_b = ctx.at_for_key(ctx.jwk("KR"))
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_b, key="KR", jwk=private_jwk(ctx.fx.kr)), tok_b))


@case("DPOP-RS-16", "9449 §4.2, §4.3(6)", "M", "jwk missing or unusable",
      sent='(a) no `jwk`; (b) `jwk` is a string; (c) EC point not on P-256; (d) RSA-1024 jwk',
      expect='401·D(invalid_dpop_proof) each; (d) is POLICY')
def dpop_rs_16(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "a", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, header={"jwk": REMOVE}), tok))
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok, header={"jwk": "not-a-jwk"}), tok))
    off_curve = dict(ctx.jwk("K1"), y=ctx.jwk("K2")["y"])
    tok_c = ctx.at_for_key(off_curve)
    ctx.check(rec, "c", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok_c, jwk=off_curve), tok_c))
    small = rsa.generate_private_key(65537, 1024)
    jwk_d = public_jwk(small)
    tok_d = ctx.at_for_key(jwk_d)
    ctx.check(rec, "d", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_d, alg="PS256", jwk=jwk_d, sign_key=small), tok_d), level="P")


@case("DPOP-RS-17", "9449 §4.2", "M", "extra header parameters and claims are allowed",
      sent='extra header parameter `tx_id` and extra claim `tx_id_key`',
      expect='200 (other members are allowed)')
def dpop_rs_17(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.ok(), lambda: send_proof(
        ctx, ctx.proof(tok, header={"tx_id": 1}, claims={"tx_id_key": 1}), tok))


@case("DPOP-RS-18", "RFC 7638 §3.2", "M", "non-required jwk members do not enter the thumbprint",
      sent='`jwk` also carries `kid`, `use`, `alg`, `key_ops`',
      expect='200 (the thumbprint uses the required members only)')
def dpop_rs_18(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    jwk = dict(ctx.jwk("K1"), kid="k1", use="sig", alg="ES256", key_ops=["verify"])
    ctx.check(rec, "", X.ok(), lambda: send_proof(ctx, ctx.proof(tok, jwk=jwk), tok))

