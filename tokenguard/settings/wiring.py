"""Wiring, in one place: a :class:`~tokenguard.settings.Config` in, the verifier and the auth service out.

Used by the server, the WSGI entry point, ``explain``, the mock IdP's tests and the project's tests.
Everything the core needs from outside -- the clock, how keys and introspection answers are fetched,
the replay store, the nonce secret -- is decided here and injected.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.bindings import Bindings
from tokenguard.core.bindings.bearer import BearerBinding
from tokenguard.core.bindings.dpop import DpopBinding
from tokenguard.core.bindings.mtls import MtlsBinding
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.introspection import Introspector, PostForm
from tokenguard.core.jwks import FetchEvent, JwksCache, KeyStore
from tokenguard.core.metadata import FetchJson
from tokenguard.core.nonce import RS_LABEL, NonceIssuer
from tokenguard.core.replay import ReplayStore
from tokenguard.core.verifier import Verifier
from tokenguard.files import read_or_create
from tokenguard.keysets import FileKeyStore
from tokenguard.outbound import http_fetch_json, http_post_form
from tokenguard.settings import Config
from tokenguard.settings.loader import read_secret
from tokenguard.settings.replay import replay_store
from tokenguard.web import logs, metrics
from tokenguard.web.adapters import Adapters
from tokenguard.web.adapters.forwarded import ForwardedRequestReader, HeaderLimits, ProxyTrust
from tokenguard.web.responses import Responder
from tokenguard.web.service import AuthService

Clock = Callable[[], float]


NONCE_SECRET_FILE = "nonce.secret"  # under the state directory, when no secret is configured


def nonce_secret(config: Config) -> bytes:
    """The nonce secret: configured, or generated once per host under the state directory."""
    secret = read_secret(config.dpop.nonce_secret, config.dpop.nonce_secret_file, config.source,
                         "dpop.nonce_secret")
    if secret:
        return secret.encode()
    # Workers start concurrently: the file is created atomically once and every process reads it.
    return read_or_create(config.state_dir / NONCE_SECRET_FILE, lambda: secrets.token_urlsafe(32).encode()).strip()


def core_bindings(dpop: DpopVerifier) -> Bindings:
    """The binding registry: DPoP (``cnf.jkt``), mTLS (``cnf["x5t#S256"]``) and unbound bearer tokens."""
    return Bindings([DpopBinding(dpop), MtlsBinding(), BearerBinding()])


def build_issuers(config: Config, *, fetch: FetchJson, post: PostForm, clock: Clock, keys: KeyStore | None = None,
                  background: bool = False, on_jwks_fetch: Callable[[FetchEvent], None] | None = None
                  ) -> list[Issuer]:
    token = config.token
    issuers = []
    for i, item in enumerate(config.issuers):
        introspector = None
        if item.introspection_client_id:
            endpoint = item.introspection_endpoint or item.issuer.rstrip("/") + "/introspect"
            secret = read_secret(item.introspection_client_secret, item.introspection_client_secret_file,
                                 config.source, f"issuer[{i}].introspection_client_secret")
            introspector = Introspector(endpoint, item.introspection_client_id, secret, post=post,
                                        cache_ttl=item.introspection_cache_ttl, clock=clock)
        jwks = JwksCache(item.issuer, jwks_uri=item.jwks_uri or None, fetch=fetch, ttl=token.jwks_ttl,
                         cooldown=token.jwks_refresh_cooldown, max_stale=token.jwks_max_stale,
                         key_wait=token.key_wait, clock=clock, store=keys, background=background,
                         on_fetch=on_jwks_fetch)
        issuers.append(Issuer(item.issuer, jwks=jwks, introspector=introspector, audiences=item.audience))
    return issuers


def build_verifier(config: Config, *, clock: Clock | None = None, fetch: FetchJson | None = None,
                   post: PostForm | None = None, replay: ReplayStore | None = None,
                   keys: KeyStore | None = None, background_keys: bool = True,
                   on_jwks_fetch: Callable[[FetchEvent], None] | None = None) -> Verifier:
    """The pure core, wired from a config: issuers and their key sources, bindings, replay store, policy.

    Key sets are shared with the host's other workers through files in the state directory and refreshed
    by background threads (``background_keys=False``: on the request path, for one-shot tools).
    """
    now = clock or time.time
    token = config.token
    issuers = build_issuers(config, fetch=fetch or http_fetch_json(timeout=token.http_timeout),
                            post=post or http_post_form(timeout=token.http_timeout), clock=now,
                            keys=keys if keys is not None else FileKeyStore(config.state_dir),
                            background=background_keys, on_jwks_fetch=on_jwks_fetch)
    validator = AccessTokenValidator(issuers, audiences=token.audience, algs=token.algs, leeway=token.leeway,
                                     required_claims=token.required_claims, require_typ=token.require_typ,
                                     clock=now, cache_size=token.cache_size)
    dpop = config.dpop
    nonces = NonceIssuer(nonce_secret(config), RS_LABEL, step=dpop.nonce_step,
                         accept_steps=dpop.nonce_accept_steps, clock=now)
    dpop_verifier = DpopVerifier(algs=dpop.algs, nonces=nonces, iat_past=dpop.iat_past,
                                 iat_future=dpop.iat_future, max_proof_bytes=dpop.max_proof_bytes,
                                 max_jti_length=dpop.max_jti_length, clock=now)
    if replay is None:
        replay = replay_store(config, clock=now, window=dpop_verifier.replay_ttl)
    dpop_verifier.replay = replay
    return Verifier(validator, core_bindings(dpop_verifier), config.policy, replay=replay, nonces=nonces,
                    reset_margin=dpop.iat_future, clock=now)


def build_responder(config: Config) -> Responder:
    return Responder(realm=config.server.realm, auth_request_mode=config.server.mode == "auth_request",
                     dpop_algs=config.dpop.algs, fail_status=config.server.fail_status)


def build_adapters(config: Config) -> Adapters:
    server = config.server
    trust = ProxyTrust.from_cidrs(server.trusted_proxies, server.public_url,
                                  unix_socket=server.listen.startswith("unix:"))  # the socket's peer is the proxy
    return Adapters(ForwardedRequestReader(trust, cert_header=config.mtls.cert_header,
                                           cert_format=config.mtls.cert_format,
                                           method_header=config.proxy.original_method_header,
                                           uri_header=config.proxy.original_uri_header,
                                           limits=HeaderLimits(server.max_header_bytes, server.max_header_fields)))


def observe_key_fetch(fetch: FetchEvent) -> None:
    """Every fetch of an issuer's keys is counted; failures and recoveries are logged with their cause."""
    metrics.on_jwks_fetch(fetch)
    logs.key_fetch(fetch)


def start_key_refresh(service: AuthService) -> None:
    """Start every issuer's background key refresher: a worker calls it once it is built, so the first
    fetch (or the adoption of persisted keys) runs before requests arrive, not in their way."""
    for issuer in service.verifier.tokens.issuers.values():
        if issuer.jwks is not None:
            issuer.jwks.start()


def build_service(config: Config, verifier: Verifier | None = None, **verifier_options: object) -> AuthService:
    """The auth service for a config; ``verifier`` may be injected (tests), else it is built here."""
    if verifier is None:
        verifier_options.setdefault("on_jwks_fetch", observe_key_fetch)
        verifier = build_verifier(config, **verifier_options)  # type: ignore[arg-type]
    return AuthService(verifier, build_adapters(config), build_responder(config),
                       log_decisions=config.server.log_decisions, log_explain=config.server.log_explain)
