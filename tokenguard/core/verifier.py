"""The verification pipeline: a validated request in, a :class:`~tokenguard.core.decision.Decision` out.

request -> route -> access token (JWT or introspection) -> binding (registry by ``cnf``: DPoP proof,
certificate, or none) -> policy (scopes, claims) -> decision. Pure: no Flask, no proxy headers, no
TOML, no HTTP answers here (:mod:`tokenguard.web.responses` makes those).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from tokenguard.core.access_token import AccessTokenValidator
from tokenguard.core.bindings import Bindings
from tokenguard.core.bindings.base import Scheme
from tokenguard.core.decision import Decision, Outcome
from tokenguard.core.dpop import DEFAULT_IAT_FUTURE
from tokenguard.core.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    ReplayStoreFull,
    UseDpopNonce,
    VerifierUnavailable,
    safe_text,
)
from tokenguard.core.nonce import NonceIssuer
from tokenguard.core.policy import Policy, Route
from tokenguard.core.replay import ReplayStore, StoreStatus
from tokenguard.core.request import AuthRequest, Target
from tokenguard.core.trace import Trace
from tokenguard.core.uri import has_query_parameter

log = logging.getLogger(__name__)

#: RFC 6750 §2.1 b64token; RFC 9449 §7.1 uses token68, which has the same characters.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: The longest access token accepted (RFC 9068 JWTs with many claims run to several KiB).
MAX_TOKEN_LENGTH = 16384
CREDENTIALS = "RFC 6750 §2.1, RFC 9449 §7.1"
#: Two Authorization fields folded by the WSGI server into one value: ``<scheme> <token>, <scheme> <token>``.
_FOLDED_CREDENTIALS = re.compile(r",\s*[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*\s+\S")
_SCHEMES = {"bearer": Scheme.BEARER, "dpop": Scheme.DPOP}
BOTH = (Scheme.BEARER, Scheme.DPOP)


@dataclass(frozen=True, slots=True)
class ReplayHealth:
    """The replay store as ``/readyz`` and ``/metrics`` report it."""

    state: str  # "ok", "reset", "full" or "unavailable"
    detail: str  # "ok", or what is wrong in words
    status: StoreStatus


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Denial(Exception):
    """An RFC error, and the schemes whose challenge carries it."""

    def __init__(self, error: OAuthError, error_on: tuple[Scheme, ...]) -> None:
        self.error = error
        self.error_on = error_on


class _NoCredentials(Exception):
    """No usable credentials: RFC 6750 §3.1 says the challenge then carries no error code."""


@lru_cache(maxsize=64)
def _public_origin(public_url: str) -> Target:
    return Target.parse(public_url.rstrip("/") + "/")


class Verifier:
    """Decides one request. Token validation, bindings and policy are injected (see ``settings.wiring``)."""

    def __init__(self, tokens: AccessTokenValidator, bindings: Bindings, policy: Policy, *,
                 replay: ReplayStore | None = None, nonces: NonceIssuer | None = None,
                 reset_margin: float = DEFAULT_IAT_FUTURE, clock: Callable[[], float] = time.time) -> None:
        self.tokens = tokens
        self.bindings = bindings
        self.policy = policy
        self.replay = replay
        self.nonces = nonces
        self.reset_margin = reset_margin  # the DPoP verifier's iat_future: how long a reset refuses proofs
        self.clock = clock

    # -- the pipeline ----------------------------------------------------------------------------
    def decide(self, request: AuthRequest, trace: Trace | None = None) -> Decision:
        """Decide one request; ``trace`` (``explain``, ``server.log_explain``) collects every check."""
        route: Route | None = None
        try:
            target = request.target
            route = self.policy.route_for(request.method, target.host, target.path)
            if trace is not None:
                trace.add("route", "[[route]], first match wins", route is not None,
                          f"a route for {request.method} {target.host}{target.path}",
                          f"route {route.name}" if route is not None else "no route matches: policy.default = deny")
            if route is None:
                raise _Denial(AccessDenied("no_route", "No route allows this request"), ())
            if route.public_url:
                origin = _public_origin(route.public_url)
                request = dataclasses.replace(request, target=dataclasses.replace(
                    target, scheme=origin.scheme, host=origin.host, port=origin.port))
                if trace is not None:
                    trace.add("public_url", f"[[route]] {route.name} public_url", True,
                              "the external URL the client called", request.target.htu)
            return self._authenticate(request, route, trace)
        except _Denial as denial:
            return self._deny(request, route, denial.error, denial.error_on)
        except _NoCredentials as exc:
            return self._deny(request, route, None, (), reason=str(exc))
        except VerifierUnavailable as exc:
            if trace is not None and all(check.ok for check in trace.checks):  # e.g. the replay store did not answer
                trace.add("able to decide", "fail closed", False, "every source of truth answering", exc.description)
            return self._unavailable(request, route, exc.reason, exc.description)
        except Exception as exc:  # fail closed on anything unforeseen
            # The type and where it happened, never the message: it could quote request content.
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
            log.error("internal error while deciding: %s at %s", type(exc).__name__, where)
            if trace is not None:
                trace.add("able to decide", "fail closed", False, "no internal error",
                          f"{type(exc).__name__} at {where}")
            return self._unavailable(request, route, "internal_error", f"{type(exc).__name__} at {where}")

    def _authenticate(self, request: AuthRequest, route: Route, trace: Trace | None) -> Decision:
        scheme, token = self._credentials(request, trace)
        used = (scheme,)
        try:
            access = self.tokens.validate(token, trace)
            if trace is None:
                method, thumbprint = self.bindings.for_cnf(access.cnf)
            else:
                method, thumbprint = self.bindings.traced_for_cnf(access.cnf, trace)
            confirmation = method.confirm(request, route, scheme, access, thumbprint, trace)
            scopes = access.scopes
            route.authorize(scopes, access.claims, trace)
        except OAuthError as exc:
            raise _Denial(exc, used) from None
        return Decision(Outcome.ALLOW, "ok", offered=route.offered, route=route, target=request.target,
                        method=request.method, access=access, binding=method.binding, thumbprint=thumbprint,
                        scopes=scopes, nonce=confirmation.nonce)

    def _credentials(self, request: AuthRequest, trace: Trace | None) -> tuple[Scheme, str]:
        """RFC 6750 §2.1 / RFC 9449 §7.1: exactly one Authorization field with one scheme and token.

        RFC 6750 §2.3 query tokens are not supported: alone they are no credentials (§3.1: no error
        code), next to an Authorization field they are a second method, ``invalid_request`` (§3.1), so
        that no upstream that reads ``access_token`` from the query acts on a token nobody checked.
        """
        values = request.authorization
        query = request.target.query
        in_query = query is not None and has_query_parameter(query, "access_token")
        if not values:
            if trace is not None:
                trace.add("Authorization", CREDENTIALS, False, "Authorization: DPoP <token> or Bearer <token>",
                          "no Authorization header" + (" (a token in the query is not a supported method)"
                                                       if in_query else ""))
            raise _NoCredentials("token_in_query" if in_query else "no_credentials")
        if len(values) > 1 or any(_FOLDED_CREDENTIALS.search(v) for v in values):
            if trace is not None:
                trace.add("Authorization", CREDENTIALS, False, "exactly one Authorization field with one credential",
                          f"{len(values)} fields" if len(values) > 1 else "two credentials in one field")
            raise _Denial(InvalidRequest("multiple_authorization", "More than one Authorization header"), BOTH)
        if in_query:
            if trace is not None:
                trace.add("one token, one place", "RFC 6750 §2.3, §3.1", False,
                          "the access token in the Authorization header only", "also access_token in the query")
            raise _Denial(InvalidRequest("multiple_token_methods", "An access token in the query and in the "
                                         "Authorization header: more than one method"), BOTH)
        scheme_word, _, token = values[0].strip().partition(" ")
        scheme = _SCHEMES.get(scheme_word.lower())
        if scheme is None:
            if trace is not None:
                trace.add("Authorization scheme", CREDENTIALS, False, "Bearer or DPoP", scheme_word[:40])
            raise _NoCredentials("unsupported_scheme")
        token = token.strip(" ")
        problem = ("no token after the scheme" if not token else f"{len(token)} characters" if len(token) >
                   MAX_TOKEN_LENGTH else "characters outside token68" if not _TOKEN68.fullmatch(token) else None)
        if trace is not None:
            trace.add("Authorization", CREDENTIALS, problem is None,
                      f"{scheme.value} <token68 of at most {MAX_TOKEN_LENGTH} characters>",
                      f"{scheme.value} {problem or f'token of {len(token)} characters'}")
        if not token:
            raise _Denial(InvalidRequest("token_missing", "The Authorization header has no token"), (scheme,))
        if len(token) > MAX_TOKEN_LENGTH:
            raise _Denial(InvalidToken("token_too_large", "The access token is longer than this server accepts"),
                          (scheme,))
        if problem is not None:
            raise _Denial(InvalidRequest("token_syntax", "The access token has invalid characters"), (scheme,))
        return scheme, token

    # -- outcomes --------------------------------------------------------------------------------
    def _nonce_for(self, route: Route | None) -> str | None:
        """RFC 9449 §9: a route that requires nonces hands the current one out with every denial."""
        if route is not None and route.dpop_nonce and self.nonces is not None:
            return self.nonces.issue()
        return None

    def _deny(self, request: AuthRequest, route: Route | None, error: OAuthError | None,
              error_on: tuple[Scheme, ...], reason: str = "no_credentials") -> Decision:
        offered = route.offered if route is not None else BOTH
        if error is not None and error_on and not set(error_on) & set(offered):
            error_on = offered[:1]
        nonce = error.nonce if isinstance(error, UseDpopNonce) else self._nonce_for(route)
        return Decision(Outcome.DENY, error.reason if error is not None else reason, error=error,
                        offered=offered, error_on=error_on, route=route, target=request.target,
                        method=request.method, nonce=nonce, detail=error.description if error else "")

    def _unavailable(self, request: AuthRequest, route: Route | None, reason: str, detail: str) -> Decision:
        return Decision(Outcome.UNAVAILABLE, reason, offered=route.offered if route is not None else BOTH,
                        route=route, target=request.target, method=request.method, detail=detail)

    # -- operations ------------------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Ready when every issuer has signing keys (or an introspection endpoint) and the replay store can
        record proofs and is past a reset's guard (until then it refuses every fresh DPoP proof)."""
        checks = self.tokens.readiness()
        health = self.replay_health()
        if health is not None:
            checks["replay_store"] = health.detail
        return all(value == "ok" for value in checks.values()), checks

    def replay_health(self) -> ReplayHealth | None:
        """The replay store's state for ``/readyz`` and ``/metrics``: ok, reset (guard running), full, or
        unavailable (unreachable, damaged, an eviction policy that can drop live keys)."""
        if self.replay is None:
            return None
        status = self.replay.status()
        if status.problem is not None:
            state = "full" if isinstance(status.problem, ReplayStoreFull) else "unavailable"
            return ReplayHealth(state, status.problem.description, status)
        guard = status.epoch + self.reset_margin
        if math.floor(self.clock()) < guard:  # proofs carry whole seconds: ready when one made now passes
            return ReplayHealth("reset", safe_text(
                f"{status.name} reset at {_iso(status.epoch)} ({status.reset or 'new'}): DPoP proofs issued "
                f"before {_iso(guard)} are refused (replay_store_reset)", 300), status)
        return ReplayHealth("ok", "ok", status)
