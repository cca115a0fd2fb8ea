"""Spec §2.3: authorization-server nonces (RFC 9449 §8)."""

from __future__ import annotations

from ..expect import NONCE_RE
from ..model import Recorder, SkipCase
from ..transport import JsonResponse
from .common import case, expect_error, expect_token, rec_result
from .context import AsClient, AsContext


def _nonce_problem(res: JsonResponse) -> str | None:
    problem = expect_error(res, {400}, {"use_dpop_nonce"})
    if problem:
        return problem
    values = res.all("DPoP-Nonce")
    if len(values) != 1 or not NONCE_RE.match(values[0]):
        return f"{len(values)} valid DPoP-Nonce headers, expected 1"
    cc = {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}
    return None if "no-store" in cc else "no Cache-Control: no-store"


def _need_nonce(ctx: AsContext) -> AsClient:
    if not ctx.nonce_mode:
        raise SkipCase("AS nonce mode not declared (--as-nonce)")
    return ctx.clients.get("confidential") or ctx.client("dpop-required")


@case("NONCE-AS-01", "9449 §8 Fig 20", "M", "nonce required at the token endpoint",
      sent='with --as-nonce: T-DPOP without nonce',
      expect='400 use_dpop_nonce, exactly one DPoP-Nonce, no-store')
def nonce_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(nonce=False)], retry_nonce=False)
    rec_result(rec, "", "400 use_dpop_nonce + one DPoP-Nonce, no-store", res, _nonce_problem(res))


@case("NONCE-AS-02", "9449 §8, §8.2", "M", "retry with the nonce",
      sent='retry with a new proof carrying that nonce',
      expect='200 DPoP')
def nonce_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    first = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(nonce=False)], retry_nonce=False)
    nonce = next(iter(first.all("DPoP-Nonce")), None)
    if nonce is None:
        raise SkipCase("no nonce was issued")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(claims={"nonce": nonce})], retry_nonce=False)
    rec_result(rec, "", "200 DPoP", res, expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("NONCE-AS-03", "9449 §8", "M", "made-up nonce",
      sent='a made-up nonce',
      expect='400 use_dpop_nonce with a new DPoP-Nonce')
def nonce_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(claims={"nonce": "made-up-nonce"})],
                    retry_nonce=False)
    rec_result(rec, "", "400 use_dpop_nonce + new DPoP-Nonce", res, _nonce_problem(res))
