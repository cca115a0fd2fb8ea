"""Spec §1.7: scope authorization (RFC 6750 §3.1)."""

from __future__ import annotations

from .. import expect as X
from ..minting import (
    now,
)
from ..model import Recorder
from .common import b_invalid, case
from .context import RsContext


@case("SCOPE-RS-01", "6750 §3, §3.1", "M", "insufficient scope (Bearer)",
      sent='POST to the write route with a Bearer token of scope read',
      expect='403·B(insufficient_scope, scope=write)')
def scope_rs_01(ctx: RsContext, rec: Recorder) -> None:
    url = ctx.url("write", query=None)
    ctx.check(rec, "", X.insufficient_scope(ctx.profile, "Bearer", "write"),
              lambda: ctx.send(method="POST", url=url, authorization=f"Bearer {ctx.at()}"))


@case("SCOPE-RS-03", "6750 §3.1", "M", "authentication before authorization",
      sent='POST to the write route with an expired token lacking the scope',
      expect='401·B(invalid_token), not 403')
def scope_rs_03(ctx: RsContext, rec: Recorder) -> None:
    url = ctx.url("write", query=None)
    tok = ctx.at(exp=now() - 3600)
    ctx.check(rec, "", b_invalid(ctx), lambda: ctx.send(method="POST", url=url, authorization=f"Bearer {tok}"))


@case("SCOPE-RS-04", "6750 §3.1; 9449 §7.1", "M", "insufficient scope (DPoP)",
      sent='B-DPOP shape (scope read) with a valid proof for POST on the write route',
      expect='403·D(insufficient_scope, scope=write) with algs')
def scope_rs_04(ctx: RsContext, rec: Recorder) -> None:
    url = ctx.url("write", query=None)
    ctx.check(rec, "", X.insufficient_scope(ctx.profile, "DPoP", "write"),
              lambda: ctx.b_dpop(url=url, method="POST"))
