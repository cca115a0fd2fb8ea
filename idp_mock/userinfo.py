"""``/userinfo`` is a protected resource judged by tokenguard's own verifier (RFC 9449 §7, RFC 8705 §3,
RFC 6750 §3): the same pipeline a resource server runs, fed with the IdP's own JWKS and its own
introspection in-process, so DPoP, certificate and bearer rules cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.bindings import Bindings
from tokenguard.core.bindings.bearer import BearerBinding
from tokenguard.core.bindings.dpop import DpopBinding
from tokenguard.core.bindings.mtls import MtlsBinding
from tokenguard.core.decision import refused
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.errors import OAuthError
from tokenguard.core.introspection import Introspector
from tokenguard.core.jwks import JwksCache
from tokenguard.core.nonce import NonceIssuer
from tokenguard.core.policy import Policy, Route, RouteBinding
from tokenguard.core.replay import ReplayStore
from tokenguard.core.request import AuthRequest, ClientCertificate, Target
from tokenguard.core.verifier import Verifier
from tokenguard.web.responses import Answer, Responder

from .tokens import ACCESS, TokenService

#: Scope -> OIDC standard claims it releases (OIDC Core §5.4).
SCOPE_CLAIMS = {"profile": ("name", "preferred_username"), "email": ("email",)}


def build_verifier(*, issuer: str, jwks: Callable[[], Mapping[str, Any]], tokens: TokenService,
                   audiences: tuple[str, ...], algs: tuple[str, ...], replay: ReplayStore,
                   nonces: NonceIssuer | None, require_nonce: bool, iat_past: int, iat_future: int,
                   clock: Callable[[], float] = time.time) -> Userinfo:
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
    used_nonces = nonces if require_nonce else None
    dpop = DpopVerifier(algs=algs, replay=replay, nonces=used_nonces, iat_past=iat_past, iat_future=iat_future,
                        clock=clock)
    policy = Policy(routes=(Route(name="userinfo", binding=RouteBinding.ANY, dpop_nonce=used_nonces is not None),))
    verifier = Verifier(validator, Bindings([DpopBinding(dpop), MtlsBinding(), BearerBinding()]), policy,
                        replay=replay, nonces=used_nonces)
    return Userinfo(verifier, Responder(realm="idp-mock", auth_request_mode=False, dpop_algs=algs, fail_status=503))


class Userinfo:
    """The verifier and the responder of the userinfo route."""

    def __init__(self, verifier: Verifier, responder: Responder) -> None:
        self.verifier = verifier
        self.responder = responder

    def decide(self, *, method: str, target: Callable[[], Target], authorization: tuple[str, ...],
               dpop: tuple[str, ...], client_cert: ClientCertificate | None) -> Answer:
        try:
            request = AuthRequest(method, target(), authorization, dpop, client_cert)
        except OAuthError as exc:
            return self.responder.render(refused(exc))
        return self.responder.render(self.verifier.decide(request))


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
