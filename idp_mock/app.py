"""Application factory: wires configuration, keys, storage, tokenguard's DPoP core and authlib's
authorization server into one Flask app.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from tokenguard.core.nonce import AS_LABEL, NonceIssuer
from tokenguard.core.replay import open_replay_store
from tokenguard.files import read_or_create

from . import endpoints
from .client_auth import PrivateKeyJwt, TrustAnchors, self_signed_tls_client_auth, tls_client_auth
from .clients import Registry
from .config import IdpConfig, load_config
from .dpop_binding import AsDpop
from .endpoints import Introspection, Revocation
from .grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant, S256CodeChallenge
from .keys import KeyManager
from .proxy import ProxyTrust
from .server import NO_STORE, Idp, IdpServer, Urls
from .store import GrantStore
from .tokens import TokenService
from .userinfo import build_verifier

log = logging.getLogger("idp_mock")


class _Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


def _trust_anchors(config: IdpConfig) -> TrustAnchors:
    pem = b""
    if config.mtls_trust_anchors:
        pem += Path(config.mtls_trust_anchors).read_bytes()
    if config.demo_clients:
        pem += (config.state_path / "demo" / "ca.crt").read_bytes()
    return TrustAnchors.from_pem(pem)


def create_app(config: IdpConfig | None = None, *, clock: Callable[[], float] = time.time) -> Flask:
    config = config or load_config()
    state = config.state_path
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("authlib", "authlib.oauth2"):
        logging.getLogger(name).setLevel(logging.WARNING)  # authlib logs issued tokens at DEBUG

    urls = Urls(config.issuer, config.mtls_base or None)
    registry = Registry(config)
    keys = KeyManager(state, alg=config.signing_alg, rotation_grace=config.rotation_grace,
                      retain=config.access_token_lifetime + 300, clock=clock)
    store = GrantStore(state / "grants.sqlite3", clock=clock)
    replay = open_replay_store(config.replay, state, clock=clock)
    nonce_secret = read_or_create(state / "dpop-nonce.secret", lambda: secrets.token_bytes(32))
    nonces = NonceIssuer(nonce_secret, AS_LABEL, clock=clock)
    dpop = AsDpop(algs=config.dpop_algs, replay=replay, nonces=nonces, require_nonce=config.dpop_nonce,
                  iat_past=config.dpop_iat_past, iat_future=config.dpop_iat_future, clock=clock)
    server = IdpServer()
    idp = Idp(config=config, urls=urls, registry=registry, keys=keys, store=store,
              tokens=TokenService(config, keys, store, clock), dpop=dpop, proxy=ProxyTrust(config.trusted_proxies),
              server=server)
    server.idp = idp
    idp.userinfo = build_verifier(
        issuer=config.issuer, jwks=keys.public_jwks, tokens=idp.tokens,
        audiences=tuple(dict.fromkeys((config.audience, config.issuer, urls["userinfo_endpoint"],
                                       *config.resources))),
        algs=config.dpop_algs, replay=replay, nonces=nonces, require_nonce=config.dpop_nonce,
        iat_past=config.dpop_iat_past, iat_future=config.dpop_iat_future, clock=clock)

    def assertion_audiences() -> list[str]:
        from flask import request

        called = idp.proxy.external_url(request)
        return list(dict.fromkeys([config.issuer, urls["token_endpoint"], called,
                                   *urls.mtls_aliases().values(), urls["pushed_authorization_request_endpoint"]]))

    server.register_client_auth_method("tls_client_auth", tls_client_auth(_trust_anchors(config)))
    server.register_client_auth_method("self_signed_tls_client_auth", self_signed_tls_client_auth)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJwt(assertion_audiences, replay, clock=clock))
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    server.register_extension(lambda _server: _Issuer(config.issuer)(_server))

    app = Flask("idp_mock", root_path=str(Path(__file__).parent), instance_path=str(state.resolve() / "instance"))
    app.config.update(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=256 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["idp_mock"] = idp
    server.init_app(app)
    app.register_blueprint(endpoints.bp, url_prefix=urls.path or None)
    for suffix in ("oauth-authorization-server", "openid-configuration"):
        app.add_url_rule(urls.well_known(suffix), f"well_known_{suffix}", endpoints.metadata_response)
    if urls.path:  # OIDC Discovery §4 appends the suffix to the issuer instead of inserting it
        app.add_url_rule(urls.path + "/.well-known/openid-configuration", "oidc_appended",
                         endpoints.metadata_response)
    app.add_url_rule(urls.path + "/jwks", "jwks", endpoints.jwks_response)
    app.add_url_rule((urls.path or "") + "/healthz", "healthz", lambda: {"status": "ok"})
    _error_handlers(app)
    return app


def _error_handlers(app: Flask) -> None:
    """JSON for every failure; an unexpected exception fails closed and logs its type only (no token
    or secret can reach the log through an exception message)."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        error = {404: "not_found", 405: "invalid_request", 413: "invalid_request"}.get(code, "invalid_request")
        body = {"error": error, "error_description": (exc.name or "error").replace('"', "")}
        return Response(json.dumps(body), status=code, mimetype="application/json", headers=NO_STORE)

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:
        log.error("internal error: %s", type(exc).__name__)
        body: dict[str, Any] = {"error": "server_error", "error_description": "Internal error"}
        return Response(json.dumps(body), status=500, mimetype="application/json", headers=NO_STORE)
