"""Spec §1.3: resource-server nonces (RFC 9449 §8, §9, §11.3)."""

from __future__ import annotations

from .. import expect as X
from ..minting import (
    b64u,
)
from ..model import Recorder, SkipCase
from .common import case, send_proof
from .context import RsContext


def _need_nonce_route(ctx: RsContext) -> str:
    if not ctx.nonce_resource:
        raise SkipCase("no --nonce-resource (a route with DPoP nonces on) was given")
    return ctx.url("nonce", query=None)


def _use_nonce(ctx: RsContext) -> X.Expect:
    return X.with_nonce(X.dpop_error(ctx.profile, "use_dpop_nonce"))


def _get_nonce(ctx: RsContext, url: str) -> str:
    tok = ctx.at("jkt")
    resp = send_proof(ctx, ctx.proof(tok, url=url), tok, url=url)
    nonces = resp.all("DPoP-Nonce")
    if resp.status != 401 or len(nonces) != 1:
        raise SkipCase(f"could not obtain a nonce from the nonce route (got {resp.summary()})")
    return nonces[0]


@case("NONCE-RS-01", "9449 §9 Fig 24, §7.1", "M", "nonce required",
      sent='B-DPOP on the nonce route, proof without `nonce`',
      expect='401·D(use_dpop_nonce)+N')
def nonce_rs_01(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    tok = ctx.at("jkt")
    ctx.check(rec, "", _use_nonce(ctx), lambda: send_proof(ctx, ctx.proof(tok, url=url), tok, url=url))


@case("NONCE-RS-02", "9449 §8, §9", "M", "retry with the nonce",
      sent='retry with a new proof carrying the nonce just issued',
      expect='200 (a rotated DPoP-Nonce on the 200 must be no-store)')
def nonce_rs_02(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    nonce = _get_nonce(ctx, url)
    tok = ctx.at("jkt")
    resp = ctx.check(rec, "", X.ok(), lambda: send_proof(
        ctx, ctx.proof(tok, url=url, claims={"nonce": nonce}), tok, url=url))
    if resp is not None and resp.status == 200 and resp.all("DPoP-Nonce"):
        rec.record("-rotate", "a 200 carrying DPoP-Nonce is no-store", resp.summary(), X.cache_no_store(resp))


@case("NONCE-RS-03", "9449 §4.3(10), §8", "M", "unknown or stale nonce",
      sent='proof with (a) a made-up `nonce`; (b) a well-formed never-issued (stale) nonce',
      expect='401·D(use_dpop_nonce)+N, a fresh nonce each')
def nonce_rs_03(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    tok = ctx.at("jkt")
    ctx.check(rec, "a", _use_nonce(ctx), lambda: send_proof(
        ctx, ctx.proof(tok, url=url, claims={"nonce": "not-a-server-nonce"}), tok, url=url))
    # A well-formed but never-issued nonce of realistic shape stands in for an expired one:
    # a black box cannot age the verifier's nonce secret.
    tok_b = ctx.at("jkt")
    stale = b64u(b"\x00" * 8 + bytes(range(24)))
    ctx.check(rec, "b", _use_nonce(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_b, url=url, claims={"nonce": stale}), tok_b, url=url))


@case("NONCE-RS-04", "9449 §9", "M", "nonce issued by the AS is not valid at the RS",
      sent='proof carrying a nonce issued by the AS token endpoint (needs --as-metadata)',
      expect='401·D(use_dpop_nonce)+N (AS and RS nonces differ)')
def nonce_rs_04(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    as_nonce = ctx.as_nonce() if ctx.as_nonce else None
    if not as_nonce:
        raise SkipCase("no AS nonce available (needs --as-metadata and an AS that issues DPoP nonces)")
    tok = ctx.at("jkt")
    ctx.check(rec, "", _use_nonce(ctx), lambda: send_proof(
        ctx, ctx.proof(tok, url=url, claims={"nonce": as_nonce}), tok, url=url))


@case("NONCE-RS-05", "9449 §11.3", "M", "after a nonce was issued, a proof without one is refused",
      sent='after a nonce was issued, a proof without `nonce`',
      expect='401·D(use_dpop_nonce)+N, never 200')
def nonce_rs_05(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    _get_nonce(ctx, url)
    tok = ctx.at("jkt")
    ctx.check(rec, "", _use_nonce(ctx), lambda: send_proof(ctx, ctx.proof(tok, url=url), tok, url=url))


@case("NONCE-RS-06", "9449 §4.3(11), §11.1", "S", "freshness from the server nonce",
      sent='a valid RS nonce with `iat` one hour in the past',
      expect='200 (freshness may come from the nonce)')
def nonce_rs_06(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)
    nonce = _get_nonce(ctx, url)
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.ok(), lambda: send_proof(
        ctx, ctx.proof(tok, url=url, iat_offset=-3600, claims={"nonce": nonce}), tok, url=url))


@case("NONCE-RS-07", "9449 §8, §8.1, §8.2", "M", "DPoP-Nonce header hygiene",
      sent='trigger a nonce twice',
      expect='each answer: exactly one DPoP-Nonce of 1*NQCHAR, ≥128 bits, Cache-Control: no-store')
def nonce_rs_07(ctx: RsContext, rec: Recorder) -> None:
    url = _need_nonce_route(ctx)

    def entropy(resp: X.Response) -> str | None:
        values = resp.all("DPoP-Nonce")
        if values and len(values[0]) < 22:  # 22 base64url chars carry 128 bits
            return f"DPoP-Nonce has {len(values[0])} chars; too short for 128 bits"
        return None

    e = _use_nonce(ctx).plus(entropy, suffix=" ≥128 bits")
    for sub in ("a", "b"):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, e, lambda tok=tok: send_proof(ctx, ctx.proof(tok, url=url), tok, url=url))


@case("NONCE-RS-08", "9449 §4.3(10)", "P", "unsolicited nonce ignored when nonces are off",
      sent='nonce mode off: the proof carries an unsolicited `nonce`',
      expect='200 (ignored)')
def nonce_rs_08(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", X.ok(), lambda: send_proof(ctx, ctx.proof(tok, claims={"nonce": "unsolicited"}), tok))
