"""The resource-server registry and the helpers every §1 module uses."""

from __future__ import annotations

from typing import Any

from .. import expect as X
from ..model import Registry
from .context import RsContext

RS = Registry("RS", ("BASE", "HDR", "DPOP", "NONCE", "BIND", "MTLS", "JWT", "SCOPE"))
case = RS.case


def dproof(ctx: RsContext) -> X.Expect:
    """``401·D(invalid_dpop_proof)``: the commonest expectation of §1.2."""
    return X.dpop_error(ctx.profile, "invalid_dpop_proof")


def send_proof(ctx: RsContext, proof: str, token: str, url: str | None = None,
               method: str = "GET", **kw: Any) -> X.Response:
    """``Authorization: DPoP <token>`` plus exactly the given proof."""
    return ctx.send(method=method, url=url, authorization=f"DPoP {token}", dpop=proof, **kw)


def b_invalid(ctx: RsContext) -> X.Expect:
    """``401·B(invalid_token)``: the commonest expectation of §1.5 and §1.6."""
    return X.bearer_error(ctx.profile, "invalid_token")
