"""A decision is data: what was decided and why. :mod:`tokenguard.web.responses` turns it into HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import OAuthError

if TYPE_CHECKING:
    from tokenguard.core.access_token import AccessToken
    from tokenguard.core.policy import Route
    from tokenguard.core.request import Target


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"  # an RFC 6750 / RFC 9449 error, or no usable credentials
    UNAVAILABLE = "error"  # nothing safe to decide on: fail closed


@dataclass(slots=True)
class Decision:
    """The outcome of one request and everything a response, a log line or ``explain`` needs.

    ``offered`` are the schemes the route accepts (one challenge each on a denial); ``error_on`` the
    schemes whose challenge carries ``error`` (RFC 9449 §7.1, Figs 17-19). ``nonce`` is a fresh DPoP
    nonce to hand out (with an allow, or on a denial on a nonce route).
    """

    outcome: Outcome
    reason: str
    error: OAuthError | None = None
    offered: tuple[Scheme, ...] = (Scheme.BEARER, Scheme.DPOP)
    error_on: tuple[Scheme, ...] = ()
    route: Route | None = None
    target: Target | None = None
    method: str | None = None
    access: AccessToken | None = None
    binding: Binding | None = None
    thumbprint: str | None = None
    scopes: tuple[str, ...] = ()
    nonce: str | None = None
    detail: str = ""  # for the log only: a safe description (never token content)

    @property
    def allow(self) -> bool:
        return self.outcome is Outcome.ALLOW


def refused(error: OAuthError) -> Decision:
    """The request could not even be read (a hostile or broken framing): deny, the error on every scheme."""
    both = (Scheme.BEARER, Scheme.DPOP)
    return Decision(Outcome.DENY, error.reason, error=error, offered=both, error_on=both, detail=error.description)


def unavailable(reason: str, detail: str = "") -> Decision:
    """Nothing safe to decide on: fail closed."""
    return Decision(Outcome.UNAVAILABLE, reason, detail=detail)
