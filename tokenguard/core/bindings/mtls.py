"""Certificate-bound tokens (RFC 8705 §3): the presented certificate's ``x5t#S256`` must be the token's."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from tokenguard.core.b64 import sha256_b64url
from tokenguard.core.bindings import Confirmation
from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import InvalidRequest, InvalidToken

if TYPE_CHECKING:
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest, ClientCertificate


def x5t_s256(der: bytes) -> str:
    """RFC 8705 §3.1: base64url SHA-256 of the certificate's DER encoding."""
    return sha256_b64url(der)


def check_certificate(presented: ClientCertificate | None, expected_x5t: str) -> str:
    """RFC 8705 §3: the presented certificate's ``x5t#S256`` must equal the token's. Returns it."""
    if presented is not None and presented.problem is not None:
        raise InvalidToken("cert_malformed", "Client certificate is not a valid X.509 certificate")
    if presented is None:
        raise InvalidToken("cert_missing", "Access token is certificate-bound but no client certificate was presented")
    thumbprint = presented.x5t_s256
    if not hmac.compare_digest(thumbprint, expected_x5t):
        raise InvalidToken("cert_mismatch", "Client certificate does not match the access token binding")
    return thumbprint


class MtlsBinding:
    binding = Binding.MTLS
    cnf_member = "x5t#S256"

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, token: str,
                thumbprint: str | None) -> Confirmation:
        if scheme is not Scheme.BEARER:  # RFC 8705 §3 tokens are presented as bearer tokens
            raise InvalidToken("mtls_token_as_dpop", "Certificate-bound access token sent with the DPoP scheme")
        if not route.binding.accepts(self.binding):
            raise InvalidToken("binding_not_allowed", "This resource requires a DPoP-bound token")
        if request.dpop:
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        assert thumbprint is not None
        check_certificate(request.client_cert, thumbprint)
        return Confirmation()
