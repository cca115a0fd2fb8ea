"""Route policy: which routes need which binding, scopes and claims (contract, "Routes and policy").

Routes are matched on host, method and path; the first match wins and no match means deny. Claim
conditions (:mod:`.claims`) work on nested claim paths (``realm_access.roles``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.cache import BoundedCache
from tokenguard.core.errors import AccessDenied, InsufficientScope
from tokenguard.core.policy.claims import MISSING, ClaimRule, claim_at

if TYPE_CHECKING:
    from tokenguard.core.trace import Trace

__all__ = ["MISSING", "ClaimRule", "Policy", "ReplayMode", "Route", "RouteBinding", "claim_at"]


class RouteBinding(StrEnum):
    """What a route accepts: ``dpop``, ``mtls``, ``bound`` (either) or ``any`` (bearer too)."""

    DPOP = "dpop"
    MTLS = "mtls"
    BOUND = "bound"
    ANY = "any"

    def accepts(self, binding: Binding) -> bool:
        return binding in _ACCEPTS[self]

    def offers(self, scheme: Scheme) -> bool:
        """Whether a challenge for ``scheme`` belongs on this route's denials."""
        return any(b.scheme is scheme for b in _ACCEPTS[self])


_ACCEPTS = {
    RouteBinding.DPOP: frozenset({Binding.DPOP}),
    RouteBinding.MTLS: frozenset({Binding.MTLS}),
    RouteBinding.BOUND: frozenset({Binding.DPOP, Binding.MTLS}),
    RouteBinding.ANY: frozenset(Binding),
}


class ReplayMode(StrEnum):
    """``consume``: tokenguard records each proof's ``jti``; ``off``: the upstream checks replay itself."""

    CONSUME = "consume"
    OFF = "off"


@dataclass(frozen=True)
class Route:
    """One ``[[route]]``: what it matches and what it requires."""

    name: str = "default"
    hosts: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = ()
    path: str = "*"
    binding: RouteBinding = RouteBinding.ANY
    scopes: tuple[str, ...] = ()
    any_scopes: tuple[str, ...] = ()
    claims: tuple[ClaimRule, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    dpop_nonce: bool = False
    public_url: str | None = None
    replay: ReplayMode = ReplayMode.CONSUME

    @cached_property
    def offered(self) -> tuple[Scheme, ...]:
        """The challenges a denial on this route carries, in a fixed order (worked out once per route)."""
        return tuple(s for s in (Scheme.BEARER, Scheme.DPOP) if self.binding.offers(s))

    def matches(self, method: str, host: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if not any(fnmatchcase(host.lower(), pattern.lower()) for pattern in self.hosts):
            return False
        return fnmatchcase(path, self.path)

    def authorize(self, scopes: Sequence[str], claims: Mapping[str, Any], trace: Trace | None = None) -> None:
        """RFC 6750 §3.1: missing scopes are ``insufficient_scope`` (403) naming what is needed."""
        granted = set(scopes)
        missing = [s for s in self.scopes if s not in granted]
        no_any = bool(self.any_scopes) and not granted.intersection(self.any_scopes)
        if trace is not None:
            where = f"RFC 6750 §3.1, [[route]] {self.name}"
            wanted = f"all of {' '.join(self.scopes)}" if self.scopes else "none required"
            trace.add("scopes", where, not missing, wanted, " ".join(scopes) or "(none)")
            if self.any_scopes:
                trace.add("any_scopes", where, not no_any, f"one of {' '.join(self.any_scopes)}", " ".join(scopes))
        if missing or no_any:
            needed = " ".join(self.scopes) if missing else " ".join(self.any_scopes)
            raise InsufficientScope("insufficient_scope", "The access token lacks a required scope", needed)
        for rule in self.claims:
            holds = rule.holds(claims)
            if trace is not None:
                value = claim_at(claims, rule.path)
                trace.add(f"claim {rule.path}", f"[[route]] {self.name} claims", holds, rule.wanted(),
                          "(absent)" if value is MISSING else value)
            if not holds:
                raise AccessDenied("claim_mismatch", f"Route policy refused the token: {rule.describe()}")


#: The route of a request that matches none when ``policy.default = "allow"``.
DEFAULT_ALLOW = Route(name="default")
#: With no routes configured at all: any sender-constrained token, on any path.
DEFAULT_ROUTES = (Route(name="default", binding=RouteBinding.BOUND),)
#: Bytes the route memo may hold: request paths are client-chosen.
MEMO_BYTES = 1 << 20


@dataclass(frozen=True)
class Policy:
    """The routes in order, and what happens to a request that matches none (``deny`` or ``allow``)."""

    routes: tuple[Route, ...] = ()
    default: str = "deny"
    memo_size: int = 4096
    _matches: BoundedCache[tuple[str, str, str], Route] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matches", BoundedCache(self.memo_size, MEMO_BYTES))

    def route_for(self, method: str, host: str, path: str) -> Route | None:
        """The first route that matches (remembered: a deployment sees the same few paths over and over)."""
        key = (method, host, path)
        hit = self._matches.get(key)
        if hit is not None:
            return hit
        found = next((route for route in self.routes if route.matches(*key)), None)
        if found is None and self.default == "allow":
            found = DEFAULT_ALLOW
        if found is not None:  # a miss stays cheap to recompute; only matches are remembered
            self._matches.put(key, found, len(method) + len(host) + len(path) + 320)
        return found
