"""Certificate-bound tokens (RFC 8705 §3): the presented certificate's ``x5t#S256`` must be the token's."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from tokenguard.core.b64 import sha256_b64url
from tokenguard.core.bindings import Confirmation
from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import InvalidRequest, InvalidToken

if TYPE_CHECKING:
    from tokenguard.core.access_token import AccessToken
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest, ClientCertificate
    from tokenguard.core.trace import Trace


def x5t_s256(der: bytes) -> str:
    """RFC 8705 §3.1: base64url SHA-256 of the certificate's DER encoding."""
    return sha256_b64url(der)


def check_certificate(presented: ClientCertificate | None, expected_x5t: str, trace: Trace | None = None) -> str:
    """RFC 8705 §3: the presented certificate's ``x5t#S256`` must equal the token's. Returns it."""
    if trace is not None:
        trace.add("client certificate", "RFC 8705 §3", presented is not None and presented.problem is None,
                  "one X.509 certificate from the trusted proxy",
                  "none presented" if presented is None else presented.problem or "present")
    if presented is not None and presented.problem is not None:
        raise InvalidToken("cert_malformed", "Client certificate is not a valid X.509 certificate")
    if presented is None:
        raise InvalidToken("cert_missing", "Access token is certificate-bound but no client certificate was presented")
    thumbprint = presented.x5t_s256
    ok = hmac.compare_digest(thumbprint, expected_x5t)
    if trace is not None:
        trace.add("cnf.x5t#S256", "RFC 8705 §3.1", ok, f"{expected_x5t} (the token's cnf)",
                  f"{thumbprint} (the presented certificate)")
    if not ok:
        raise InvalidToken("cert_mismatch", "Client certificate does not match the access token binding")
    return thumbprint


class MtlsBinding:
    binding = Binding.MTLS
    cnf_member = "x5t#S256"

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, access: AccessToken,
                thumbprint: str | None, trace: Trace | None = None) -> Confirmation:
        if trace is not None:
            trace.add("scheme", "RFC 8705 §3", scheme is Scheme.BEARER, "Authorization: Bearer (the token is "
                      "certificate-bound)", f"Authorization: {scheme.value}")
        if scheme is not Scheme.BEARER:  # RFC 8705 §3 tokens are presented as bearer tokens
            raise InvalidToken("mtls_token_as_dpop", "Certificate-bound access token sent with the DPoP scheme")
        ok = route.binding.accepts(self.binding)
        if trace is not None:
            trace.add("route binding", f"[[route]] {route.name} binding", ok, f"{route.binding.value} accepts mtls",
                      "a certificate-bound token")
        if not ok:
            raise InvalidToken("binding_not_allowed", "This resource requires a DPoP-bound token")
        if trace is not None:
            trace.add("no DPoP proof", "RFC 9449 §7.2", not request.dpop, "no DPoP header with the Bearer scheme",
                      f"{len(request.dpop)} DPoP header(s)")
        if request.dpop:
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        assert thumbprint is not None
        check_certificate(request.client_cert, thumbprint, trace)
        return Confirmation()
