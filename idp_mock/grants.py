"""authlib's grants, extended with sender-constrained tokens.

* RFC 9449 §5: a valid DPoP proof binds the access token (``cnf.jkt``, ``token_type: DPoP``); clients
  registered with ``dpop_bound_access_tokens`` must send one; §10: a code issued for ``dpop_jkt``
  is redeemed only with that key; public clients' refresh tokens are bound to the key.
* RFC 8705 §3: clients with ``tls_client_certificate_bound_access_tokens`` get ``cnf["x5t#S256"]``;
  §4: public clients' refresh tokens are bound to the certificate.
* Never both bindings on one token (MTLS-AS-06, docs/conformance-cases.md).
* PKCE (RFC 7636) is required, ``S256`` only; RFC 8707 ``resource`` sets the audience.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge

from tokenguard.core.bindings.mtls import x5t_s256

from .clients import Client
from .errors import InvalidTargetError
from .store import credential_key
from .tokens import BEARER, REFRESH, Binding, StoredToken

if TYPE_CHECKING:
    from .server import Idp

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth",
                      "self_signed_tls_client_auth", "none"]
JKT = re.compile(r"[A-Za-z0-9_-]{43}")
CODE = "code"


class S256CodeChallenge(CodeChallenge):
    """RFC 7636 with ``S256`` only, and a ``code_challenge`` required in every authorization request."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE code_challenge is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class IdpGrant:
    """Shared by the token grants: scope, ``resource`` and sender-constraint decisions."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    request: Any
    server: Any
    binding: Binding = BEARER

    @property
    def idp(self) -> Idp:
        return self.server.idp

    def validate_requested_scope(self) -> None:
        """Scopes are checked per client in :meth:`granted_scope`."""

    def granted_scope(self, client: Client, requested: str | None) -> str:
        scope = client.get_allowed_scope(requested)
        if scope is None:
            raise InvalidScopeError("The requested scope is not registered for this client")
        return scope

    def requested_resource(self) -> str | None:
        """RFC 8707 §2: at most one absolute ``resource`` URI without fragment (and allow-listed)."""
        values = self.request.payload.datalist.get("resource", [])
        if not values:
            return None
        if len(values) > 1:
            raise InvalidTargetError("Only one resource per request is supported")
        resource = values[0]
        scheme, sep, rest = resource.partition("://")
        if not sep or not scheme or not rest or "#" in resource:
            raise InvalidTargetError("resource must be an absolute URI without a fragment")
        allowed = self.idp.config.resources
        if allowed and resource not in allowed:
            raise InvalidTargetError("resource is not a known protected resource")
        return str(resource)

    def audience(self, client: Client, resource: str | None) -> str:
        return resource or client.meta.audience or self.idp.config.audience

    def sender_constraint(self, client: Client) -> Binding:
        """RFC 9449 §5 and RFC 8705 §3: how the new access token is bound."""
        proof = self.request.dpop_proof
        cert = self.request.client_cert
        if client.meta.tls_client_certificate_bound_access_tokens:
            if proof is not None:
                raise InvalidRequestError("Multiple proof-of-possession mechanisms are not allowed")
            if cert is None:
                raise InvalidGrantError("Certificate-bound tokens need a client certificate (RFC 8705)")
            return Binding({"x5t#S256": x5t_s256(cert)})
        if proof is not None:
            return Binding({"jkt": proof.jkt})
        if client.meta.dpop_bound_access_tokens:
            raise InvalidRequestError("This client must send a DPoP proof (dpop_bound_access_tokens)")
        return BEARER

    def held_binding(self, cnf: dict[str, str], what: str) -> Binding:
        """The request proves possession of the key or certificate ``cnf`` names, else ``invalid_grant``."""
        proof, cert = self.request.dpop_proof, self.request.client_cert
        if "jkt" in cnf:
            if proof is None:
                raise InvalidGrantError(f"The {what} is bound to a DPoP key: a DPoP proof is required")
            if proof.jkt != cnf["jkt"]:
                raise InvalidGrantError(f"The DPoP proof key does not match the {what} binding")
            return Binding({"jkt": cnf["jkt"]})
        if cert is None or x5t_s256(cert) != cnf.get("x5t#S256"):
            raise InvalidGrantError(f"The client certificate does not match the {what} binding")
        if proof is not None:
            raise InvalidRequestError("Multiple proof-of-possession mechanisms are not allowed")
        return Binding({"x5t#S256": cnf["x5t#S256"]})

    def response(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        headers = list(grants.BaseGrant.TOKEN_RESPONSE_HEADER)
        nonce = self.idp.dpop.next_nonce(self.request.dpop_proof)
        if nonce:
            headers.append(("DPoP-Nonce", nonce))
        return 200, body, headers


class ClientCredentialsGrant(IdpGrant, grants.ClientCredentialsGrant):
    """RFC 6749 §4.4; ``sub`` is the client itself."""

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client = self.request.client
        self.scope = self.granted_scope(client, self.request.payload.scope)
        self.resource = self.requested_resource()
        self.binding = self.sender_constraint(client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.request.client
        body = self.idp.tokens.issue(client=client, grant_type=self.GRANT_TYPE, sub=client.client_id,
                                     scope=self.scope, audience=self.audience(client, self.resource),
                                     binding=self.binding)
        return self.response(body)


class AuthorizationCode:
    """A redeemed authorization code, as authlib's grant and PKCE extension read it."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.code_challenge = record.get("code_challenge")
        self.code_challenge_method = record.get("code_challenge_method")

    def get_redirect_uri(self) -> str | None:
        return self.record.get("redirect_uri")

    def get_scope(self) -> str:
        return str(self.record.get("scope") or "")


class AuthorizationCodeGrant(IdpGrant, grants.AuthorizationCodeGrant):
    """RFC 6749 §4.1 with PKCE, ``dpop_jkt`` (RFC 9449 §10) and ``resource`` (RFC 8707)."""

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        data = self.request.payload.data
        client: Client = self.request.client
        try:
            jkt = data.get("dpop_jkt")
            if jkt is not None and not JKT.fullmatch(jkt):
                raise InvalidRequestError("dpop_jkt must be a base64url SHA-256 JWK thumbprint")
            self.requested_resource()
            if client.meta.require_pushed_authorization_requests and not getattr(self.request, "pushed", False):
                raise InvalidRequestError("This client must use pushed authorization requests (RFC 9126)")
        except (InvalidRequestError, InvalidTargetError) as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        record = {"client_id": request.client.client_id, "redirect_uri": data.get("redirect_uri"),
                  "scope": request.scope, "sub": request.user.sub,
                  "code_challenge": data.get("code_challenge"),
                  "code_challenge_method": data.get("code_challenge_method"),
                  "dpop_jkt": data.get("dpop_jkt"), "resource": data.get("resource"), "auth_time": int(time.time())}
        self.idp.store.put(CODE, credential_key(code), record, self.idp.config.code_lifetime, uuid.uuid4().hex)

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """One use only; a second use revokes what the first one issued (RFC 6749 §4.1.2)."""
        store = self.idp.store
        key = credential_key(code)
        record = store.take(CODE, key)
        if record is None:
            old = store.get(CODE, key)
            if old is not None and old["_revoked"]:
                store.revoke_family(old["_family"])
            return None
        if record["client_id"] != client.client_id:
            return None
        return AuthorizationCode(record)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Already consumed atomically by :meth:`query_authorization_code`."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Any:
        return self.idp.registry.users.get(authorization_code.record["sub"])

    def validate_token_request(self) -> None:
        super().validate_token_request()
        code: AuthorizationCode = self.request.authorization_code
        client: Client = self.request.client
        if code.record.get("dpop_jkt"):  # RFC 9449 §10
            self.held_binding({"jkt": code.record["dpop_jkt"]}, "authorization code")
        resource = self.requested_resource()
        if resource is not None and resource != code.record.get("resource"):
            raise InvalidTargetError("resource differs from the one authorized")
        self.binding = self.sender_constraint(client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        code: AuthorizationCode = self.request.authorization_code
        client: Client = self.request.client
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("The user of this code no longer exists")
        resource = code.record.get("resource")
        body = self.idp.tokens.issue(
            client=client, grant_type=self.GRANT_TYPE, sub=user.sub, scope=code.get_scope(),
            audience=self.audience(client, resource), binding=self.binding, family=code.record["_family"],
            refresh="new" if client.check_grant_type("refresh_token") else "none",
            refresh_cnf=self.binding.cnf if client.is_public else None, resource=resource,
            auth_time=code.record.get("auth_time"))
        return self.response(body)


class RefreshTokenGrant(IdpGrant, grants.RefreshTokenGrant):
    """RFC 6749 §6. Bound refresh tokens (public clients) need the same key or certificate; unbound
    ones (confidential clients, whose client authentication binds them) are rotated on every use,
    and a rotated one used again revokes its grant (RFC 9700 §4.14.2)."""

    def authenticate_refresh_token(self, refresh_token: str) -> StoredToken | None:
        token = self.idp.tokens.find(refresh_token, REFRESH)
        if token is None or token.kind != REFRESH or token.is_expired():
            return None
        if token.is_revoked():
            self.idp.store.revoke_family(token.family)
            return None
        return token

    def authenticate_user(self, refresh_token: StoredToken) -> Any:
        return self.idp.registry.users.get(refresh_token.record["sub"])

    def validate_token_request(self) -> None:
        super().validate_token_request()
        token: StoredToken = self.request.refresh_token
        cnf = token.record.get("cnf")
        if cnf:
            self.binding = self.held_binding(cnf, "refresh token")
        else:
            self.binding = self.sender_constraint(self.request.client)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token: StoredToken = self.request.refresh_token
        client: Client = self.request.client
        record = token.record
        rotate = not record.get("cnf")
        if rotate and self.idp.store.take(REFRESH, token.key) is None:
            raise InvalidGrantError("The refresh token was already used")
        resource = record.get("resource")
        body = self.idp.tokens.issue(
            client=client, grant_type=self.GRANT_TYPE, sub=record["sub"],
            scope=self.request.payload.scope or token.get_scope(), audience=self.audience(client, resource),
            binding=self.binding, family=token.family, refresh="new" if rotate else "none",
            refresh_cnf=self.binding.cnf if client.is_public else None, resource=resource,
            auth_time=record.get("auth_time"))
        return self.response(body)
