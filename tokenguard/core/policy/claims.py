"""Claim conditions of a route, one operator per entry in a registry (contract, "Routes and policy").

An operator parses its configured value once (a bad value is a configuration error) and then says
whether a claim holds. A new operator is one :class:`ClaimOperator` registered with
:func:`register_operator`; the configuration and the policy find it by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: What :func:`claim_at` returns for a path that is not in the claims (distinct from a JSON ``null``).
MISSING: Any = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (``realm_access.roles``), or :data:`MISSING`."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


@dataclass(frozen=True)
class ClaimOperator:
    """``parse`` turns the configured value into what ``holds`` compares with (raises ValueError)."""

    name: str
    parse: Callable[[Any], Any]
    holds: Callable[[Any, Any], bool]  # (actual claim value or MISSING, parsed expected value)


OPERATORS: dict[str, ClaimOperator] = {}


def register_operator(operator: ClaimOperator) -> ClaimOperator:
    OPERATORS[operator.name] = operator
    return operator


def _any(value: Any) -> Any:
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("must be a list")
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return re.compile(_string(value))
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _equals(actual: Any, expected: Any) -> bool:
    return actual is not MISSING and bool(actual == expected)


def _one_of(actual: Any, expected: list[Any]) -> bool:
    return actual is not MISSING and any(actual == value for value in expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list):
        return expected in actual
    return isinstance(actual, str) and expected in actual.split()  # space-separated words, like scope


def _matches(actual: Any, expected: re.Pattern[str]) -> bool:
    return isinstance(actual, str) and expected.fullmatch(actual) is not None


def _present(actual: Any, expected: bool) -> bool:
    return (actual is not MISSING) == expected


for _operator in (ClaimOperator("equals", _any, _equals), ClaimOperator("one_of", _list, _one_of),
                  ClaimOperator("contains", _any, _contains), ClaimOperator("regex", _regex, _matches),
                  ClaimOperator("present", _bool, _present)):
    register_operator(_operator)


@dataclass(frozen=True)
class ClaimRule:
    """One condition on a claim: ``path``, the operator, and its parsed expected value."""

    path: str
    operator: ClaimOperator
    expected: Any = field(default=None)

    @classmethod
    def build(cls, path: str, operator: str, value: Any) -> ClaimRule:
        """Look the operator up and parse its value; ``KeyError`` / ``ValueError`` name the problem."""
        op = OPERATORS[operator]
        return cls(path, op, op.parse(value))

    def holds(self, claims: Mapping[str, Any]) -> bool:
        return self.operator.holds(claim_at(claims, self.path), self.expected)

    def describe(self) -> str:
        return f"claim {self.path} {self.operator.name}"

    def wanted(self) -> str:
        """The condition with its value, for ``explain``: ``contains "api-user"``."""
        value = self.expected.pattern if isinstance(self.expected, re.Pattern) else self.expected
        return f"{self.operator.name} {json.dumps(value, default=str)}"
