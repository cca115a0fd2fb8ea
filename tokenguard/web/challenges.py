"""``WWW-Authenticate`` challenges (RFC 6750 §3, RFC 9449 §7.1), built in one place.

Parsing lives with the client (:mod:`tokenguard.client.challenges`).

With both schemes offered and no credentials, neither challenge carries an error (Fig 17). When the
scheme used is known, only its challenge carries the error (Fig 18); when the request was ambiguous
(two ``Authorization`` fields) both do (Fig 19). ``DPoP`` challenges always list ``algs``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenguard.core.errors import InsufficientScope, OAuthError

BEARER = "Bearer"
DPOP = "DPoP"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "").replace('"', "") + '"'


def _challenge(scheme: str, *, realm: str, error: OAuthError | None, dpop_algs: Sequence[str]) -> str:
    params = [f"realm={_quoted(realm)}"] if realm else []
    if error is not None:
        params.append(f"error={_quoted(error.error)}")
        if error.description:
            params.append(f"error_description={_quoted(error.description)}")
        if isinstance(error, InsufficientScope) and error.scope:
            params.append(f"scope={_quoted(error.scope)}")
    if scheme == DPOP:
        params.append(f"algs={_quoted(' '.join(dpop_algs))}")
    return f"{scheme} {', '.join(params)}" if params else scheme


def www_authenticate(offered: Sequence[str], *, realm: str, error: OAuthError | None,
                     error_on: Sequence[str], dpop_algs: Sequence[str]) -> str:
    """One header value with a challenge per offered scheme; ``error`` only on ``error_on`` schemes."""
    return ", ".join(
        _challenge(scheme, realm=realm, error=error if scheme in error_on else None, dpop_algs=dpop_algs)
        for scheme in offered)
