"""Unbound tokens (RFC 6750): allowed only where the route says ``binding = "any"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenguard.core.bindings import Confirmation
from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import InvalidRequest, InvalidToken

if TYPE_CHECKING:
    from tokenguard.core.access_token import AccessToken
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest
    from tokenguard.core.trace import Trace


class BearerBinding:
    binding = Binding.BEARER
    cnf_member = None

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, access: AccessToken,
                thumbprint: str | None, trace: Trace | None = None) -> Confirmation:
        if trace is not None:
            trace.add("scheme", "RFC 9449 §7.1", scheme is Scheme.BEARER, "Authorization: Bearer (the token has no "
                      "cnf)", f"Authorization: {scheme.value}")
        if scheme is Scheme.DPOP:  # RFC 9449 §7.1: the DPoP scheme with a token that is not DPoP-bound
            raise InvalidToken("token_not_dpop_bound", "Access token is not DPoP-bound")
        if trace is not None:
            trace.add("no DPoP proof", "RFC 9449 §7.2", not request.dpop, "no DPoP header with the Bearer scheme",
                      f"{len(request.dpop)} DPoP header(s)")
        if request.dpop:  # §7.2 with an unbound token: ambiguous, refused as a malformed request
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        ok = route.binding.accepts(self.binding)
        if trace is not None:
            trace.add("route binding", f"[[route]] {route.name} binding", ok, f"{route.binding.value} accepts bearer",
                      "an unbound (bearer) token")
        if not ok:
            raise InvalidToken("binding_required", "This resource requires a sender-constrained access token")
        return Confirmation()
