"""Which key a token is bound to (RFC 7800 ``cnf``), and the certificate check of RFC 8705 §3.

A ``cnf`` that binds the token is always enforced, whatever the route or scheme says (RFC 9449 §7.2,
spec R-11). A ``cnf`` the verifier does not understand, or one that binds two ways, fails closed.
"""

from __future__ import annotations

import hmac
from typing import Any

from tokenguard.core.errors import InvalidToken
from tokenguard.web.certs import CertificateError, read_client_cert, x5t_s256

DPOP = "dpop"
MTLS = "mtls"
BEARER = "bearer"
KNOWN_CNF = {"jkt": DPOP, "x5t#S256": MTLS}


def token_binding(cnf: Any) -> tuple[str, str | None]:
    """``(binding, thumbprint)``: ``("dpop", jkt)``, ``("mtls", x5t#S256)`` or ``("bearer", None)``."""
    if cnf is None:
        return BEARER, None
    if not isinstance(cnf, dict) or not cnf:
        raise InvalidToken("token_bad_cnf", "Access token confirmation claim is malformed")
    unknown = set(cnf) - set(KNOWN_CNF)
    if unknown:
        raise InvalidToken("token_unknown_cnf", "Access token is bound by an unsupported confirmation method")
    if len(cnf) > 1:
        raise InvalidToken("token_double_binding", "Access token is bound both to a DPoP key and a certificate")
    member, value = next(iter(cnf.items()))
    if not isinstance(value, str) or not value:
        raise InvalidToken("token_bad_cnf", "Access token confirmation claim is malformed")
    return KNOWN_CNF[member], value


def check_certificate(header_value: str | None, cert_format: str, expected_x5t: str) -> str:
    """RFC 8705 §3: the presented certificate's ``x5t#S256`` must equal the token's. Returns it."""
    try:
        der = read_client_cert(header_value, cert_format)
    except CertificateError as exc:
        raise InvalidToken("cert_malformed", "Client certificate is not a valid X.509 certificate") from exc
    if der is None:
        raise InvalidToken("cert_missing", "Access token is certificate-bound but no client certificate was presented")
    presented = x5t_s256(der)
    if not hmac.compare_digest(presented, expected_x5t):
        raise InvalidToken("cert_mismatch", "Client certificate does not match the access token binding")
    return presented
