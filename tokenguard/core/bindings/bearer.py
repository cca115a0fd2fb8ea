"""Unbound tokens (RFC 6750): allowed only where the route says ``binding = "any"``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokenguard.core.bindings import Confirmation
from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import InvalidRequest, InvalidToken

if TYPE_CHECKING:
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest


class BearerBinding:
    binding = Binding.BEARER
    cnf_member = None

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, token: str,
                thumbprint: str | None) -> Confirmation:
        if scheme is Scheme.DPOP:  # RFC 9449 §7.1: the DPoP scheme with a token that is not DPoP-bound
            raise InvalidToken("token_not_dpop_bound", "Access token is not DPoP-bound")
        if request.dpop:  # §7.2 with an unbound token: ambiguous, refused as a malformed request
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        if not route.binding.accepts(self.binding):
            raise InvalidToken("binding_required", "This resource requires a sender-constrained access token")
        return Confirmation()
