"""One exception class per RFC error code.

Each carries the RFC ``error`` code, the HTTP status it maps to at a resource server, a stable
``reason`` code for logs and ``X-Auth-Error``, and a ``description`` that is safe to show a client:
RFC 6750 §3 charset only, and never any part of a token, proof, key or secret.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def safe_text(text: str, limit: int = 200) -> str:
    """Restrict text to the RFC 6750 §3 ``error_description`` charset (no ``"`` or ``\\``, ASCII)."""
    return _UNSAFE.sub("?", text)[:limit]


class OAuthError(Exception):
    """Base class: an RFC 6749 / 6750 / 9449 error outcome."""

    error: str = "invalid_request"
    status: int = 400

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = safe_text(description)


class InvalidRequest(OAuthError):
    """RFC 6750 §3.1 ``invalid_request``: malformed or ambiguous request (400, 401 behind auth_request)."""

    error = "invalid_request"
    status = 400


class InvalidToken(OAuthError):
    """RFC 6750 §3.1 ``invalid_token``: expired, revoked, malformed, or wrongly bound token."""

    error = "invalid_token"
    status = 401


class InvalidDpopProof(OAuthError):
    """RFC 9449 §7.1 ``invalid_dpop_proof`` (401 at a resource server, 400 at an authorization server)."""

    error = "invalid_dpop_proof"
    status = 401


class UseDpopNonce(OAuthError):
    """RFC 9449 §8/§9 ``use_dpop_nonce``: the proof must carry this server-provided nonce."""

    error = "use_dpop_nonce"
    status = 401

    def __init__(self, reason: str, description: str, nonce: str) -> None:
        super().__init__(reason, description)
        self.nonce = nonce


class InsufficientScope(OAuthError):
    """RFC 6750 §3.1 ``insufficient_scope`` (403), naming the scopes the route needs."""

    error = "insufficient_scope"
    status = 403

    def __init__(self, reason: str, description: str, scope: str = "") -> None:
        super().__init__(reason, description)
        self.scope = safe_text(scope, 1000)


class AccessDenied(OAuthError):
    """Authenticated, but route policy (claims, no matching route) refuses: 403 without a scope hint."""

    error = "insufficient_scope"
    status = 403


class VerifierUnavailable(Exception):
    """Nothing safe to decide on (no keys ever fetched, replay store down): fail closed."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = safe_text(description)


class ReplayStoreUnavailable(VerifierUnavailable):
    """The replay store could not record a ``jti``: nothing may be allowed without replay protection."""

    reason_code = "replay_store_unavailable"

    def __init__(self, description: str) -> None:
        super().__init__(self.reason_code, description)


class ReplayStoreFull(ReplayStoreUnavailable):
    """The replay store holds its cap of ``jti`` values: refusing is safe, evicting a live one is not."""

    reason_code = "replay_store_full"


class ReplayStoreUnsafe(ReplayStoreUnavailable):
    """The replay store could drop live ``jti`` values (a Redis ``maxmemory-policy`` other than
    ``noeviction``): refused at start-up, and failed closed if it turns up while running."""
