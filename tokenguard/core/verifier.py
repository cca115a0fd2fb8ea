"""The verification pipeline: a normalised request in, an allow/deny decision out.

request -> route -> access token (JWT or introspection) -> binding (DPoP proof or certificate)
-> policy (scopes, claims) -> decision. Pure: no Flask, no proxy headers, no TOML here.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tokenguard.core import bindings as bind
from tokenguard.core.access_token import AccessToken, AccessTokenValidator
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    UseDpopNonce,
    VerifierUnavailable,
)
from tokenguard.core.policy import MISSING, Policy, Route, claim_at
from tokenguard.core.replay import ReplayStoreUnavailable
from tokenguard.core.uri import URIError, normalize_target
from tokenguard.web.challenges import BEARER, DPOP, www_authenticate

log = logging.getLogger("tokenguard.core.verifier")

#: RFC 6750 §2.1 b64token; RFC 9449 §7.1 uses token68, which has the same characters.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN_LENGTH = 16384
#: Two Authorization fields folded by the WSGI server into one value: ``<scheme> <token>, <scheme> <token>``.
_FOLDED_CREDENTIALS = re.compile(r",\s*[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*\s+\S")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The original request, as the proxy adapter rebuilt it."""

    method: str
    url: str
    authorization: tuple[str, ...] = ()
    dpop: tuple[str, ...] = ()
    client_cert: str | None = None  # raw header value; parsed only if the token is certificate-bound


@dataclass(slots=True)
class Decision:
    allow: bool
    status: int
    headers: list[tuple[str, str]]
    reason: str
    error: str | None = None
    description: str = ""
    route: str | None = None
    subject: str | None = None
    client_id: str | None = None
    binding: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def header_value(value: Any) -> str:
    """A claim as a header value: strings as-is, lists space-joined, non-printable bytes escaped."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if text.isprintable() and text.isascii():
        return text
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


class _Denial(Exception):
    def __init__(self, error: OAuthError, error_on: tuple[str, ...]) -> None:
        self.error = error
        self.error_on = error_on


class Verifier:
    def __init__(self, tokens: AccessTokenValidator, dpop: DpopVerifier, policy: Policy, *,
                 realm: str = "tokenguard", auth_request_mode: bool = True, cert_format: str = "escaped-pem",
                 fail_status: int = 500, clock: Callable[[], float] = time.time) -> None:
        self.tokens = tokens
        self.dpop = dpop
        self.policy = policy
        self.realm = realm
        self.auth_request_mode = auth_request_mode
        self.cert_format = cert_format
        self.fail_status = fail_status
        self.clock = clock

    # -- the pipeline ----------------------------------------------------------------------------
    def decide(self, request: AuthRequest) -> Decision:
        route: Route | None = None
        try:
            try:
                target = normalize_target(request.url)
            except URIError:
                raise _Denial(InvalidRequest("bad_request_url", "The original request URL is invalid"),
                              (BEARER, DPOP)) from None
            host, path = _host_and_path(target)
            route = self.policy.route_for(request.method, host, path)
            if route is None:
                raise _Denial(AccessDenied("no_route", "No route allows this request"), ())
            if route.public_url:
                target = normalize_target(route.public_url.rstrip("/") + path)
            return self._authenticate(request, route, target)
        except _Denial as denial:
            return self._deny(route, denial.error, denial.error_on)
        except _NoCredentials as exc:
            return self._deny(route, None, (), reason=str(exc))
        except (VerifierUnavailable, ReplayStoreUnavailable) as exc:
            reason = getattr(exc, "reason", "replay_store_unavailable")
            return self._unavailable(route, reason)
        except Exception as exc:  # fail closed on anything unforeseen
            # The type and where it happened, never the message: it could quote request content.
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else "?"
            log.error("internal error while deciding: %s at %s", type(exc).__name__, where)
            return self._unavailable(route, "internal_error")

    def _authenticate(self, request: AuthRequest, route: Route, target: str) -> Decision:
        scheme, token = self._credentials(request)
        used = (scheme,)
        try:
            access = self.tokens.validate(token)
            kind, thumb = bind.token_binding(access.cnf)
        except InvalidToken as exc:
            raise _Denial(exc, used) from None
        try:
            if kind == bind.DPOP:
                extra = self._check_dpop(request, route, scheme, token, thumb, target)
            elif kind == bind.MTLS:
                extra = self._check_certificate(request, route, scheme, thumb)
            else:
                extra = self._check_unbound(request, route, scheme)
            scopes = access.scopes
            route.authorize(scopes, access.claims)
        except OAuthError as exc:
            raise _Denial(exc, used) from None
        return self._allow(route, access, scopes, kind, thumb, extra)

    def _credentials(self, request: AuthRequest) -> tuple[str, str]:
        """RFC 6750 §2.1 / RFC 9449 §7.1: exactly one Authorization field with one scheme and token."""
        values = request.authorization
        if not values:
            raise _NoCredentials("no_credentials")
        if len(values) > 1 or any(_FOLDED_CREDENTIALS.search(v) for v in values):
            raise _Denial(InvalidRequest("multiple_authorization", "More than one Authorization header"),
                          (BEARER, DPOP))
        scheme_word, _, token = values[0].strip().partition(" ")
        scheme = {"bearer": BEARER, "dpop": DPOP}.get(scheme_word.lower())
        if scheme is None:
            raise _NoCredentials("unsupported_scheme")
        token = token.strip(" ")
        if not token:
            raise _Denial(InvalidRequest("token_missing", "The Authorization header has no token"), (scheme,))
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN68.fullmatch(token):
            raise _Denial(InvalidRequest("token_syntax", "The access token has invalid characters"), (scheme,))
        return scheme, token

    def _check_dpop(self, request: AuthRequest, route: Route, scheme: str, token: str, jkt: str | None,
                    target: str) -> dict[str, Any]:
        if scheme != DPOP:  # RFC 9449 §7.2: a DPoP-bound token sent as a bearer token
            raise InvalidToken("dpop_token_as_bearer", "DPoP-bound access token sent with the Bearer scheme")
        if route.binding == "mtls":
            raise InvalidToken("binding_not_allowed", "This resource requires a certificate-bound token")
        if not request.dpop:  # §7.1: the DPoP scheme requires a proof
            raise InvalidRequest("dpop_proof_missing", "DPoP proof is missing")
        proof = self.dpop.verify(request.dpop, htm=request.method, htu=target, access_token=token,
                                 require_nonce=route.dpop_nonce, consume=route.replay == "consume")
        if proof.jkt != jkt:  # §4.3 (12), Fig 16
            raise InvalidToken("dpop_key_mismatch", "Invalid DPoP key binding")
        extra: dict[str, Any] = {}
        if route.dpop_nonce and self.dpop.nonces is not None:
            current = self.dpop.nonces.issue()
            if proof.nonce != current:
                extra["nonce"] = current  # §8.2: hand out the next nonce with the success response
        return extra

    def _check_certificate(self, request: AuthRequest, route: Route, scheme: str,
                           x5t: str | None) -> dict[str, Any]:
        if scheme != BEARER:
            raise InvalidToken("mtls_token_as_dpop", "Certificate-bound access token sent with the DPoP scheme")
        if route.binding == "dpop":
            raise InvalidToken("binding_not_allowed", "This resource requires a DPoP-bound token")
        if request.dpop:
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        assert x5t is not None
        bind.check_certificate(request.client_cert, self.cert_format, x5t)
        return {}

    def _check_unbound(self, request: AuthRequest, route: Route, scheme: str) -> dict[str, Any]:
        if scheme == DPOP:  # §7.1: the DPoP scheme with a token that is not DPoP-bound
            raise InvalidToken("token_not_dpop_bound", "Access token is not DPoP-bound")
        if request.dpop:  # §7.2 with an unbound token: ambiguous, refused as a malformed request
            raise InvalidRequest("dpop_with_bearer", "DPoP proof sent with the Bearer scheme")
        if route.binding != "any":
            raise InvalidToken("binding_required", "This resource requires a sender-constrained access token")
        return {}

    # -- outcomes --------------------------------------------------------------------------------
    def _offered(self, route: Route | None) -> tuple[str, ...]:
        if route is None:
            return (BEARER, DPOP)
        return tuple(s for s, on in ((BEARER, route.offers_bearer), (DPOP, route.offers_dpop)) if on)

    def _allow(self, route: Route, access: AccessToken, scopes: tuple[str, ...], kind: str, thumb: str | None,
               extra: dict[str, Any]) -> Decision:
        headers = [("X-Auth-Subject", header_value(access.subject)),
                   ("X-Auth-Client-Id", header_value(access.client_id)),
                   ("X-Auth-Scope", header_value(" ".join(scopes))),
                   ("X-Auth-Binding", kind)]
        if kind == bind.DPOP and thumb:
            headers.append(("X-Auth-Jkt", thumb))
        elif kind == bind.MTLS and thumb:
            headers.append(("X-Auth-X5t-S256", thumb))
        for name, path in route.headers:
            value = claim_at(access.claims, path)
            if value is not None and value is not MISSING:
                headers.append((name, header_value(value)))
        if "nonce" in extra:
            headers += [("DPoP-Nonce", extra["nonce"]), ("Cache-Control", "no-store")]
        return Decision(True, 200, headers, "ok", route=route.name, subject=access.subject,
                        client_id=access.client_id, binding=kind)

    def _deny(self, route: Route | None, error: OAuthError | None, error_on: tuple[str, ...],
              reason: str = "no_credentials") -> Decision:
        offered = self._offered(route)
        if error is not None and error_on and not set(error_on) & set(offered):
            error_on = offered[:1]
        status = 401 if error is None else error.status
        if status == 400 and self.auth_request_mode:
            status = 401  # nginx turns anything but 2xx/401/403 into 500
        challenge = www_authenticate(offered, realm=self.realm, error=error, error_on=error_on,
                                     dpop_algs=self.dpop.algs)
        headers = [("WWW-Authenticate", challenge), ("Cache-Control", "no-store")]
        reason = error.reason if error is not None else reason
        if isinstance(error, UseDpopNonce):
            headers.append(("DPoP-Nonce", error.nonce))
        elif route is not None and route.dpop_nonce and self.dpop.nonces is not None and status == 401:
            headers.append(("DPoP-Nonce", self.dpop.nonces.issue()))
        headers.append(("X-Auth-Error", reason))
        return Decision(False, status, headers, reason, error=error.error if error else None,
                        description=error.description if error else "", route=route.name if route else None)

    def _unavailable(self, route: Route | None, reason: str) -> Decision:
        headers = [("Cache-Control", "no-store"), ("X-Auth-Error", reason)]
        if self.fail_status == 401:
            headers.insert(0, ("WWW-Authenticate", www_authenticate(
                self._offered(route), realm=self.realm, error=None, error_on=(), dpop_algs=self.dpop.algs)))
        return Decision(False, self.fail_status, headers, reason, route=route.name if route else None)


class _NoCredentials(Exception):
    """No usable credentials: RFC 6750 §3.1 says the challenge then carries no error code."""


def _host_and_path(target: str) -> tuple[str, str]:
    rest = target.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
    return host, "/" + path
