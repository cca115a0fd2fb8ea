"""Which key a token is bound to (RFC 7800 ``cnf``), and how the caller proves it holds that key.

Each binding is one module registered by its ``cnf`` member: :mod:`.dpop` (``jkt``, RFC 9449),
:mod:`.mtls` (``x5t#S256``, RFC 8705) and :mod:`.bearer` (no ``cnf``). A ``cnf`` that binds the token is
always enforced, whatever the route or scheme says (RFC 9449 §7.2); a ``cnf`` the verifier does not
understand, or one that binds two ways, fails closed. A new binding is one module with a
:class:`BindingMethod` and one entry in the list the wiring hands to :class:`Bindings`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tokenguard.core.bindings.base import Binding, Scheme
from tokenguard.core.errors import InvalidToken

if TYPE_CHECKING:
    from tokenguard.core.access_token import AccessToken
    from tokenguard.core.policy import Route
    from tokenguard.core.request import AuthRequest
    from tokenguard.core.trace import Trace

__all__ = ["Binding", "BindingMethod", "Bindings", "Confirmation", "Scheme"]


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What a successful proof of possession hands back: a fresh DPoP nonce to pass on, if any."""

    nonce: str | None = None


class BindingMethod(Protocol):
    """One way of binding a token: its kind, its ``cnf`` member (None: unbound), and its check."""

    @property
    def binding(self) -> Binding: ...

    @property
    def cnf_member(self) -> str | None:
        """The ``cnf`` member that selects this binding (RFC 7800 §3.1), or None for unbound tokens."""
        ...

    def confirm(self, request: AuthRequest, route: Route, scheme: Scheme, access: AccessToken,
                thumbprint: str | None, trace: Trace | None = None) -> Confirmation:
        """Prove the caller holds the key ``thumbprint`` names, or raise the RFC error; report to ``trace``."""
        ...


class Bindings:
    """The registry: binding methods by ``cnf`` member, plus the unbound (bearer) method."""

    def __init__(self, methods: Iterable[BindingMethod]) -> None:
        self.by_member: dict[str, BindingMethod] = {}
        self.unbound: BindingMethod | None = None
        self.by_kind: dict[Binding, BindingMethod] = {}
        for method in methods:
            self.by_kind[method.binding] = method
            if method.cnf_member is None:
                self.unbound = method
            else:
                self.by_member[method.cnf_member] = method

    def for_cnf(self, cnf: Any) -> tuple[BindingMethod, str | None]:
        """The method a token's ``cnf`` claim selects, and the thumbprint it binds to."""
        if cnf is None:
            if self.unbound is None:
                raise InvalidToken("binding_required", "This resource requires a sender-constrained access token")
            return self.unbound, None
        if not isinstance(cnf, dict) or not cnf:
            raise InvalidToken("token_bad_cnf", "Access token confirmation claim is malformed")
        if any(member not in self.by_member for member in cnf):
            raise InvalidToken("token_unknown_cnf", "Access token is bound by an unsupported confirmation method")
        if len(cnf) > 1:
            raise InvalidToken("token_double_binding", "Access token is bound both to a DPoP key and a certificate")
        member, value = next(iter(cnf.items()))
        if not isinstance(value, str) or not value or not value.isascii():  # thumbprints are base64url
            raise InvalidToken("token_bad_cnf", "Access token confirmation claim is malformed")
        return self.by_member[member], value

    def traced_for_cnf(self, cnf: Any, trace: Trace) -> tuple[BindingMethod, str | None]:
        """:meth:`for_cnf`, reporting its verdict on ``cnf`` to ``trace``."""
        expected = f"absent (bearer), or exactly one of {', '.join(sorted(self.by_member))}, a string"
        got = "absent: an unbound (bearer) token" if cnf is None else cnf
        try:
            method, thumbprint = self.for_cnf(cnf)
        except InvalidToken:
            trace.add("cnf", "RFC 7800 §3.1", False, expected, got)
            raise
        trace.add("cnf", "RFC 7800 §3.1", True, expected, got if cnf is None else f"{json.dumps(cnf)}: "
                  f"{method.binding.value}-bound")
        return method, thumbprint
