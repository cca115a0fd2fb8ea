"""DPoP-bound tokens (RFC 9449 §6, §7): a valid proof for this request, signed by the key ``cnf.jkt`` names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenguard.core.bindings import Confirmation
from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.errors import InvalidRequest, InvalidToken
from tokenguard.core.policy import ReplayMode

if TYPE_CHECKING:
    from tokenguard.core.access_token import AccessToken
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest
    from tokenguard.core.trace import Trace


class DpopBinding:
    binding = Binding.DPOP
    cnf_member = "jkt"

    def __init__(self, verifier: DpopVerifier) -> None:
        self.verifier = verifier

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, access: AccessToken,
                thumbprint: str | None, trace: Trace | None = None) -> Confirmation:
        if trace is not None:
            trace.add("scheme", "RFC 9449 §7.1", scheme is Scheme.DPOP, "Authorization: DPoP (the token is DPoP-bound)",
                      f"Authorization: {scheme.value}")
        if scheme is not Scheme.DPOP:  # RFC 9449 §7.2: a DPoP-bound token sent as a bearer token
            raise InvalidToken("dpop_token_as_bearer", "DPoP-bound access token sent with the Bearer scheme")
        ok = route.binding.accepts(self.binding)
        if trace is not None:
            trace.add("route binding", f"[[route]] {route.name} binding", ok, f"{route.binding.value} accepts dpop",
                      "a DPoP-bound token")
        if not ok:
            raise InvalidToken("binding_not_allowed", "This resource requires a certificate-bound token")
        if trace is not None:
            trace.add("DPoP proof present", "RFC 9449 §7.1", bool(request.dpop), "a DPoP header",
                      f"{len(request.dpop)} DPoP header(s)")
        if not request.dpop:  # §7.1: the DPoP scheme requires a proof
            raise InvalidRequest("dpop_proof_missing", "DPoP proof is missing")
        proof = self.verifier.verify(request.dpop, htm=request.method, htu=request.target.htu, ath=access.ath,
                                     require_nonce=route.dpop_nonce, consume=route.replay is ReplayMode.CONSUME,
                                     trace=trace)
        ok = proof.jkt == thumbprint
        if trace is not None:
            trace.add("cnf.jkt", "RFC 9449 §6.1, §7.1", ok, f"{thumbprint} (the token's cnf.jkt)",
                      f"{proof.jkt} (the proof key's thumbprint)")
        if not ok:  # §4.3 (12), Fig 16
            raise InvalidToken("dpop_key_mismatch", "Invalid DPoP key binding")
        nonces = self.verifier.nonces
        if route.dpop_nonce and nonces is not None:
            current = nonces.issue()
            if proof.nonce != current:
                return Confirmation(nonce=current)  # §8.2: hand out the next nonce with the success response
        return Confirmation()
