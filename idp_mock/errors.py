"""RFC 6749 §5.2 error types authlib lacks: RFC 9449 §5/§8, RFC 8707 §2, and fail-closed outcomes.

Descriptions pass through :func:`tokenguard.core.errors.safe_text` (RFC 6749 §5.2 charset, R-18 in docs/rules.md).
"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import OAuth2Error

from tokenguard.core.errors import safe_text


class SafeError(OAuth2Error):
    def __init__(self, description: str | None = None, **kwargs: object) -> None:
        super().__init__(safe_text(description) if description else None, **kwargs)


class InvalidDpopProofError(SafeError):
    """RFC 9449 §5: the DPoP proof at the authorization server is invalid (400)."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDpopNonceError(SafeError):
    """RFC 9449 §8: retry with this nonce (400 + exactly one ``DPoP-Nonce``)."""

    error = "use_dpop_nonce"
    status_code = 400

    def __init__(self, description: str, nonce: str) -> None:
        super().__init__(description)
        self.nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("DPoP-Nonce", self.nonce)]


class InvalidTargetError(SafeError):
    """RFC 8707 §2: the ``resource`` parameter is invalid or not allowed."""

    error = "invalid_target"
    status_code = 400


class TemporarilyUnavailableError(SafeError):
    """A dependency (the replay store) cannot answer: refuse rather than skip a check."""

    error = "temporarily_unavailable"
    status_code = 503


class RequestNotSupportedError(SafeError):
    """OIDC Core §6: request objects (``request``) are not supported."""

    error = "request_not_supported"
    status_code = 400
