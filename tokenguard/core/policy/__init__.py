"""Route policy: which routes need which binding, scopes and claims (contract, "Routes and policy").

Routes are matched on host, method and path; the first match wins and no match means deny. Claim
conditions work on nested claim paths (``realm_access.roles``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from tokenguard.core.errors import AccessDenied, InsufficientScope

BINDINGS = ("dpop", "mtls", "bound", "any")
CLAIM_OPS = ("equals", "one_of", "contains", "regex", "present")
MISSING: Any = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path, or a sentinel when any step is missing."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


@dataclass(frozen=True)
class ClaimRule:
    """One condition on a claim: ``equals``, ``one_of``, ``contains``, ``regex`` or ``present``."""

    path: str
    op: str
    value: Any = None
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        actual = claim_at(claims, self.path)
        if self.op == "present":
            return (actual is not MISSING) == bool(self.value)
        if actual is MISSING:
            return False
        if self.op == "equals":
            return bool(actual == self.value)
        if self.op == "one_of":
            return any(actual == v for v in self.value)
        if self.op == "contains":
            if isinstance(actual, list):
                return self.value in actual
            return isinstance(actual, str) and self.value in actual.split()
        if self.op == "regex":
            assert self.pattern is not None
            return isinstance(actual, str) and self.pattern.fullmatch(actual) is not None
        return False

    def describe(self) -> str:
        return f"claim {self.path} {self.op}"


@dataclass(frozen=True)
class Route:
    name: str = "default"
    hosts: tuple[str, ...] = ("*",)
    methods: tuple[str, ...] = ()
    path: str = "*"
    binding: str = "any"
    scopes: tuple[str, ...] = ()
    any_scopes: tuple[str, ...] = ()
    claims: tuple[ClaimRule, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    dpop_nonce: bool = False
    public_url: str | None = None
    replay: str = "consume"

    @property
    def offers_dpop(self) -> bool:
        return self.binding in ("dpop", "bound", "any")

    @property
    def offers_bearer(self) -> bool:
        return self.binding in ("mtls", "bound", "any")

    def matches(self, method: str, host: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        if not any(fnmatchcase(host.lower(), pattern.lower()) for pattern in self.hosts):
            return False
        return fnmatchcase(path, self.path)

    def authorize(self, scopes: Sequence[str], claims: Mapping[str, Any]) -> None:
        """RFC 6750 §3.1: missing scopes are ``insufficient_scope`` (403) naming what is needed."""
        granted = set(scopes)
        missing = [s for s in self.scopes if s not in granted]
        if missing or (self.any_scopes and not granted.intersection(self.any_scopes)):
            needed = " ".join(self.scopes) if missing else " ".join(self.any_scopes)
            raise InsufficientScope("insufficient_scope", "The access token lacks a required scope", needed)
        for rule in self.claims:
            if not rule.holds(claims):
                raise AccessDenied("claim_mismatch", f"Route policy refused the token: {rule.describe()}")


@dataclass(frozen=True)
class Policy:
    routes: tuple[Route, ...] = ()
    default: str = "deny"
    _matches: dict[tuple[str, str, str], Route | None] = field(default_factory=dict, compare=False, repr=False)

    def route_for(self, method: str, host: str, path: str) -> Route | None:
        """The first route that matches (remembered: a deployment sees the same few paths over and over)."""
        key = (method, host.lower(), path)
        if key in self._matches:
            return self._matches[key]
        found = next((route for route in self.routes if route.matches(*key)), None)
        if found is None and self.default == "allow":
            found = Route(name="default")
        if len(self._matches) >= 4096:  # paths are client-chosen: keep the memo bounded
            self._matches.clear()
        self._matches[key] = found
        return found
