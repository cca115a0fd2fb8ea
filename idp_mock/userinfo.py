"""``/userinfo`` is a protected resource judged by tokenguard's own verifier (RFC 9449 §7, RFC 8705 §3,
RFC 6750 §3): the same pipeline a resource server runs, fed with the IdP's own JWKS and its own
introspection in-process, so DPoP, certificate and bearer rules cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.introspection import Introspector
from tokenguard.core.jwks import JwksCache
from tokenguard.core.nonce import NonceIssuer
from tokenguard.core.policy import Policy, Route
from tokenguard.core.replay import ReplayStore
from tokenguard.core.verifier import AuthRequest, Decision, Verifier

from .tokens import ACCESS, TokenService

#: Scope -> OIDC standard claims it releases (OIDC Core §5.4).
SCOPE_CLAIMS = {"profile": ("name", "preferred_username"), "email": ("email",)}


def build_verifier(*, issuer: str, jwks: Callable[[], Mapping[str, Any]], tokens: TokenService,
                   audiences: tuple[str, ...], algs: tuple[str, ...], replay: ReplayStore,
                   nonces: NonceIssuer | None, require_nonce: bool, iat_past: int, iat_future: int,
                   clock: Callable[[], float] = time.time) -> Verifier:
    """A tokenguard :class:`Verifier` for the userinfo route (binding ``any``: bound tokens are held to
    their binding, plain bearer tokens are accepted)."""

    def fetch(url: str) -> Mapping[str, Any]:
        return jwks()

    def introspect(url: str, form: Mapping[str, str], auth: tuple[str, str]) -> Mapping[str, Any]:
        token = tokens.find(form["token"], ACCESS)
        if token is None or token.kind != ACCESS or token.is_expired() or token.is_revoked():
            return {"active": False}
        return tokens.introspection(token)

    keys = JwksCache(issuer, jwks_uri=issuer + "/jwks", fetch=fetch, ttl=5.0, cooldown=0.0)
    introspector = Introspector(issuer + "/introspect", "userinfo", "in-process", post=introspect, cache_ttl=0.0)
    validator = AccessTokenValidator([Issuer(issuer, jwks=keys, introspector=introspector, audiences=audiences)],
                                     audiences=audiences, clock=clock)
    dpop = DpopVerifier(algs=algs, replay=replay, nonces=nonces if require_nonce else None,
                        iat_past=iat_past, iat_future=iat_future, clock=clock)
    policy = Policy(routes=(Route(name="userinfo", binding="any", dpop_nonce=require_nonce and nonces is not None),))
    return Verifier(validator, dpop, policy, realm="idp-mock", auth_request_mode=False, fail_status=503, clock=clock)


def decide(verifier: Verifier, *, method: str, url: str, authorization: tuple[str, ...], dpop: tuple[str, ...],
           client_cert: str | None) -> Decision:
    return verifier.decide(AuthRequest(method=method, url=url, authorization=authorization, dpop=dpop,
                                       client_cert=client_cert))


def claims_for(sub: str, scope: str, users: Mapping[str, Any]) -> dict[str, Any]:
    """OIDC Core §5.3.2: ``sub`` plus what the granted scopes release."""
    out: dict[str, Any] = {"sub": sub}
    user = users.get(sub)
    if user is None:
        return out
    for name in scope.split():
        for claim in SCOPE_CLAIMS.get(name, ()):
            value = getattr(user, claim, "")
            if value:
                out[claim] = value
    return out
