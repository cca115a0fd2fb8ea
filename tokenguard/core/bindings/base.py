"""The words bindings and routes share: HTTP authentication schemes and binding kinds."""

from __future__ import annotations

from enum import StrEnum


class Scheme(StrEnum):
    """``Authorization`` schemes (RFC 6750 §2.1, RFC 9449 §7.1), spelled as in challenges."""

    BEARER = "Bearer"
    DPOP = "DPoP"


class Binding(StrEnum):
    """How an access token is bound to its holder (RFC 7800 ``cnf``), as ``X-Auth-Binding`` says it."""

    DPOP = "dpop"  # cnf.jkt, RFC 9449 §6
    MTLS = "mtls"  # cnf["x5t#S256"], RFC 8705 §3
    BEARER = "bearer"  # no cnf: a plain bearer token, RFC 6750

    @property
    def scheme(self) -> Scheme:
        """The scheme a token of this binding must be presented with."""
        return Scheme.DPOP if self is Binding.DPOP else Scheme.BEARER
