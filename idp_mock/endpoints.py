"""HTTP endpoints: metadata (RFC 8414, OIDC Discovery), JWKS, authorization (RFC 6749 §4.1, RFC 9126
PAR), token, introspection (RFC 7662), revocation (RFC 7009), userinfo, and key rotation (admin).
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Blueprint, Response, current_app, json, request

from tokenguard.core.errors import InvalidToken
from tokenguard.web.challenges import www_authenticate

from .clients import AUTH_METHODS
from .errors import RequestNotSupportedError
from .grants import TOKEN_AUTH_METHODS
from .server import CLIENT_AUTH_PARAMS, NO_STORE, Idp, IdpRequest, ParamsRequest
from .store import credential_key
from .tokens import ACCESS, StoredToken
from .userinfo import claims_for

PAR_PREFIX = "urn:ietf:params:oauth:request_uri:"
PAR = "par"
ASSERTION_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"]


def idp() -> Idp:
    return current_app.extensions["idp_mock"]


def json_response(body: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json", headers=headers or [])


# -- RFC 7662 / RFC 7009 -------------------------------------------------------------------------
class Introspection(IntrospectionEndpoint):
    """RFC 7662: resource servers (``introspect = true``) or the token's own client may ask.
    Dead tokens answer exactly ``{"active": false}`` (§2.2)."""

    CLIENT_AUTH_METHODS = [m for m in TOKEN_AUTH_METHODS if m != "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:
        return idp().tokens.find(token_string, token_type_hint)

    def check_permission(self, token: StoredToken, client: Any, request: Any) -> bool:
        return bool(client.meta.introspect or token.check_client(client))

    def introspect_token(self, token: StoredToken) -> dict[str, Any]:
        return idp().tokens.introspection(token)

    def create_endpoint_response(self, request: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        idp().server.check_parameters(request)
        return super().create_endpoint_response(request)


class Revocation(RevocationEndpoint):
    """RFC 7009: a client revokes its own tokens; revoking a refresh token ends its grant."""

    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:
        return idp().tokens.find(token_string, token_type_hint)

    def revoke_token(self, token: StoredToken, request: Any) -> None:
        idp().tokens.revoke(token)

    def create_endpoint_response(self, request: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        idp().server.check_parameters(request)
        return super().create_endpoint_response(request)


bp = Blueprint("idp", __name__, root_path=os.path.dirname(__file__))


# -- metadata --------------------------------------------------------------------------------------
def metadata() -> dict[str, Any]:
    """RFC 8414 §2 (+ RFC 9449 §5.1, RFC 8705 §3.3/§5, RFC 9126 §5, RFC 9207 §3)."""
    i = idp()
    urls = i.urls
    doc: dict[str, Any] = {"issuer": urls.issuer}
    doc.update({name: urls[name] for name in urls.PATHS})
    doc.update({
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": [m for m in AUTH_METHODS if m != "none"],
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": sorted({s for c in i.registry.clients.values() for s in c.scopes} | {"openid"}),
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "name", "preferred_username", "email"],
        "dpop_signing_alg_values_supported": list(i.dpop.algs),
        "tls_client_certificate_bound_access_tokens": True,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "access_token_signing_alg_values_supported": [i.keys.signing_key()[1]],
    })
    if aliases := urls.mtls_aliases():
        doc["mtls_endpoint_aliases"] = aliases
    return doc


def metadata_response() -> Response:
    return json_response(metadata(), headers=[("Cache-Control", "max-age=60")])


def jwks_response() -> Response:
    return json_response(idp().keys.public_jwks(), headers=[("Cache-Control", "max-age=60")])


# -- authorization endpoint -------------------------------------------------------------------------
@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """RFC 6749 §4.1.1: auto-consent by the demo user, or the user named by ``login_hint``."""
    i = idp()
    server = i.server
    req: IdpRequest = server.create_oauth2_request(None)
    try:
        server.check_parameters(req)
        oauth: Any = req
        if "request" in req.payload.data:
            raise RequestNotSupportedError("Request objects are not supported; use PAR")
        request_uri = req.payload.data.get("request_uri")
        if request_uri is not None:
            oauth = _pushed_request(i, req, request_uri)
        hint = oauth.payload.data.get("login_hint")
        user = i.registry.users.get(hint or i.config.demo_user)
        grant = server.get_consent_grant(oauth, end_user=user)
    except OAuth2Error as error:
        return server.handle_error_response(req, error)
    return server.create_authorization_response(oauth, grant_user=user, grant=grant)


def _pushed_request(i: Idp, req: IdpRequest, request_uri: str) -> ParamsRequest:
    """RFC 9126 §4: only the pushed parameters count; the ``client_id`` must match; one use."""
    if not request_uri.startswith(PAR_PREFIX):
        raise InvalidRequestError("request_uri is not one this server issued")
    record = i.store.take(PAR, credential_key(request_uri))
    if record is None:
        raise InvalidRequestError("request_uri is unknown, used or expired")
    if record["params"].get("client_id") != req.payload.data.get("client_id"):
        raise InvalidRequestError("client_id does not match the pushed request")
    return ParamsRequest(req, record["params"])


@bp.post("/par")
def par() -> Response:
    """RFC 9126 §2: client-authenticated push; a ``DPoP`` header binds the code (RFC 9449 §10.1)."""
    i = idp()
    server = i.server
    req: IdpRequest = server.create_oauth2_request(None)
    try:
        server.check_parameters(req)
        data = req.payload.data
        if "request_uri" in data:
            raise InvalidRequestError("request_uri is not allowed in a pushed authorization request")
        if "request" in data:
            raise RequestNotSupportedError("Request objects are not supported")
        proof = i.dpop.check(request.headers.getlist("DPoP"), method="POST", url=req.uri)
        client = server.authenticate_client(req, TOKEN_AUTH_METHODS, "par")
        params = {k: v for k, v in data.items() if k not in CLIENT_AUTH_PARAMS}
        params["client_id"] = client.client_id
        if proof is not None:
            if params.get("dpop_jkt", proof.jkt) != proof.jkt:
                raise InvalidRequestError("dpop_jkt does not match the DPoP proof key")
            params["dpop_jkt"] = proof.jkt
        pushed = ParamsRequest(req, params)
        grant = server.get_authorization_grant(pushed)
        grant.validate_authorization_request()
    except OAuth2Error as error:
        error.redirect_uri = None  # PAR errors are answered to the client directly (RFC 9126 §2.3)
        return server.handle_error_response(req, error)
    request_uri = PAR_PREFIX + secrets.token_urlsafe(24)
    i.store.put(PAR, credential_key(request_uri), {"params": params}, i.config.par_lifetime)
    headers = list(NO_STORE)
    if nonce := i.dpop.next_nonce(proof):
        headers.append(("DPoP-Nonce", nonce))
    return json_response({"request_uri": request_uri, "expires_in": i.config.par_lifetime}, 201, headers)


# -- token, introspection, revocation -----------------------------------------------------------
@bp.post("/token")
def token() -> Response:
    return idp().server.create_token_response()


@bp.post("/introspect")
def introspect() -> Response:
    return idp().server.create_endpoint_response("introspection")


@bp.post("/revoke")
def revoke() -> Response:
    return idp().server.create_endpoint_response("revocation")


# -- userinfo ---------------------------------------------------------------------------------------
@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core §5.3, protected exactly like a tokenguard resource (DPoP, mTLS or bearer)."""
    i = idp()
    answer = i.userinfo.decide(method=request.method, target=lambda: i.proxy.target(request),
                               authorization=tuple(request.headers.getlist("Authorization")),
                               dpop=tuple(request.headers.getlist("DPoP")), client_cert=i.proxy.certificate(request))
    headers = [(k, v) for k, v in answer.headers if not k.startswith("X-Auth-")]
    if not answer.allow:
        body = {"error": answer.error} if answer.error else {}
        if answer.decision.detail:
            body["error_description"] = answer.decision.detail
        return json_response(body, answer.status, headers)
    token_value = request.headers.get("Authorization", "").partition(" ")[2].strip()
    stored = i.tokens.find(token_value, ACCESS)
    if stored is None or stored.is_revoked() or stored.is_expired():
        error = InvalidToken("token_revoked", "Access token is revoked")
        challenge = www_authenticate(("Bearer", "DPoP"), realm="idp-mock", error=error,
                                     error_on=("DPoP" if answer.decision.binding == "dpop" else "Bearer",),
                                     dpop_algs=i.dpop.algs)
        return json_response({"error": "invalid_token", "error_description": error.description}, 401,
                             [("WWW-Authenticate", challenge), *NO_STORE])
    claims = claims_for(stored.record["sub"], stored.get_scope(), i.registry.users)
    return json_response(claims, 200, [*headers, *NO_STORE])


# -- key rotation -----------------------------------------------------------------------------------
@bp.post("/admin/rotate-keys")
def rotate_keys() -> Response:
    """Stage (or activate a staged) signing key; ``Authorization: Bearer <admin_secret>``."""
    i = idp()
    secret = i.config.admin_secret
    if not secret:
        return json_response({"error": "not_found"}, 404)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), secret.encode()):
        return json_response({"error": "invalid_token"}, 401,
                             [("WWW-Authenticate", 'Bearer realm="idp-mock-admin"'), *NO_STORE])
    return json_response(i.keys.rotate(), 200, list(NO_STORE))



