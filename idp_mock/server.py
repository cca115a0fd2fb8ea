"""The authorization server: authlib's ``AuthorizationServer`` with strict request parsing, DPoP and
client certificates attached to every request, and RFC 6749 §5.2 error responses.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Request, Response, json
from flask import request as flask_request

from tokenguard.core.errors import safe_text

from .clients import Registry
from .config import IdpConfig
from .dpop_binding import AsDpop
from .errors import UseDpopNonceError
from .keys import KeyManager
from .proxy import ProxyTrust
from .store import GrantStore
from .tokens import TokenService

log = logging.getLogger("idp_mock")
NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
CLIENT_AUTH_PARAMS = ("client_secret", "client_assertion", "client_assertion_type")


class Urls:
    """Endpoint URLs from the issuer identifier (RFC 8414 §2), and their RFC 8705 §5 mTLS aliases."""

    PATHS = {"authorization_endpoint": "/authorize", "token_endpoint": "/token", "jwks_uri": "/jwks",
             "introspection_endpoint": "/introspect", "revocation_endpoint": "/revoke",
             "userinfo_endpoint": "/userinfo", "pushed_authorization_request_endpoint": "/par"}
    MTLS = ("token_endpoint", "introspection_endpoint", "revocation_endpoint", "userinfo_endpoint",
            "pushed_authorization_request_endpoint")

    def __init__(self, issuer: str, mtls_base: str | None) -> None:
        self.issuer = issuer
        scheme, _, rest = issuer.partition("://")
        host, slash, path = rest.partition("/")
        self.origin = f"{scheme}://{host}"
        self.path = ("/" + path.rstrip("/")) if path.strip("/") else ""
        self.mtls_base = mtls_base.rstrip("/") if mtls_base else None

    def __getitem__(self, name: str) -> str:
        return self.issuer + self.PATHS[name]

    def mtls_aliases(self) -> dict[str, str]:
        if not self.mtls_base:
            return {}
        return {name: self.mtls_base + self.path + self.PATHS[name] for name in self.MTLS}

    def well_known(self, suffix: str) -> str:
        """RFC 8414 §3.1: ``/.well-known/<suffix>`` inserted between host and issuer path."""
        return f"/.well-known/{suffix}{self.path}"


@dataclass
class Idp:
    """Everything one IdP instance holds; stored in ``app.extensions["idp_mock"]``."""

    config: IdpConfig
    urls: Urls
    registry: Registry
    keys: KeyManager
    store: GrantStore
    tokens: TokenService
    dpop: AsDpop
    proxy: ProxyTrust
    server: IdpServer
    userinfo: Any = None


class _FormPayload(OAuth2Payload):
    """The request's parameters from one place only (query for GET /authorize, body for POST)."""

    def __init__(self, values: Any) -> None:
        self._values = values

    @property
    def data(self) -> Any:
        return self._values

    @cached_property
    def datalist(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for key in self._values:
            out[key].extend(self._values.getlist(key))
        return out


class IdpRequest(FlaskOAuth2Request):
    """authlib's Flask request without its transport check (the proxy terminates TLS; the issuer is the
    operator's choice), carrying the DPoP proof and client certificate the IdP verified."""

    def __init__(self, request: Request, url: str, values: Any) -> None:  # noqa: D107
        OAuth2Request.__init__(self, request.method, "https://placeholder.invalid/", headers=request.headers)
        self.uri = url
        self._request = request
        self.payload = _FormPayload(values)
        self.dpop_proof: Any = None
        self.client_cert: bytes | None = None
        self.client_cert_error = False
        self.pushed = False

    @property
    def form(self) -> Any:
        return self.payload.data


class ParamsRequest(OAuth2Request):
    """An authorization request whose parameters came from a pushed request (RFC 9126 §4)."""

    def __init__(self, base: IdpRequest, params: dict[str, str]) -> None:
        OAuth2Request.__init__(self, base.method, "https://placeholder.invalid/", headers=base.headers)
        self.uri = base.uri
        self.payload = BasicOAuth2Payload(params)
        self.dpop_proof = None
        self.client_cert = base.client_cert
        self.pushed = True

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data)

    @property
    def form(self) -> dict[str, str]:
        return dict(self.payload.data)


class IdpServer(AuthorizationServer):
    idp: Idp

    def __init__(self) -> None:
        super().__init__()
        self.scopes_supported = None

    def query_client(self, client_id: str) -> Any:
        return self.idp.registry.client(client_id)

    def save_token(self, token: Any, request: Any) -> None:
        """Tokens are stored by :class:`~idp_mock.tokens.TokenService` when issued."""

    # -- requests --------------------------------------------------------------------------------
    def create_oauth2_request(self, request: Any) -> Any:
        if isinstance(request, OAuth2Request):
            return request
        req = flask_request
        values = req.args if req.method == "GET" else req.form
        oauth = IdpRequest(req, self.idp.proxy.external_url(req), values)
        cert = self.idp.proxy.certificate(req)
        if cert is not None:
            oauth.client_cert_error = cert.problem is not None
            oauth.client_cert = cert.der if cert.problem is None else None
        return oauth

    @staticmethod
    def check_parameters(request: IdpRequest) -> None:
        """RFC 6749 §3.2: parameters in the body only, each at most once (§3.1)."""
        if request.method == "POST" and flask_request.args:
            raise InvalidRequestError("Parameters must be sent in the request body, not the query")
        for name, values in request.payload.datalist.items():
            if len(values) > 1:
                raise InvalidRequestError(f"Parameter {safe_text(name, 40)} is repeated")

    def authenticate_client(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        """RFC 6749 §2.3 (one method per request), RFC 8705 §2 (``client_id`` with mTLS)."""
        try:
            basic_id, _ = extract_basic_authorization(request.headers)
        except ValueError:  # authlib cannot split e.g. "Basic " with no credentials
            raise InvalidClientError(description="Malformed Authorization header") from None
        form = request.form
        used = [m for m, on in (("basic", basic_id is not None), ("post", "client_secret" in form),
                                ("jwt", "client_assertion" in form)) if on]
        if len(used) > 1:
            raise InvalidRequestError("Use exactly one client authentication method")
        if getattr(request, "client_cert_error", False):
            raise InvalidClientError(description="The client certificate could not be read")
        if not used and not form.get("client_id") and getattr(request, "client_cert", None) is not None:
            raise InvalidRequestError("client_id is required with mutual-TLS client authentication")
        client = super().authenticate_client(request, methods, endpoint)
        form_id = form.get("client_id")
        if form_id is not None and form_id != client.client_id:
            raise InvalidClientError(description="client_id does not match the authenticated client")
        return client

    # -- token endpoint --------------------------------------------------------------------------
    def create_token_response(self, request: Any = None) -> Response:
        req = self.create_oauth2_request(request)
        try:
            self.check_parameters(req)
            req.dpop_proof = self.idp.dpop.check(flask_request.headers.getlist("DPoP"), method=req.method,
                                                 url=req.uri)
            grant = self.get_token_grant(req)
            grant.validate_token_request()
            return self.handle_response(*grant.create_token_response())
        except OAuth2Error as error:
            return self.handle_error_response(req, error)

    # -- responses -------------------------------------------------------------------------------
    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        return Response(payload, status=status_code, headers=headers)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        """RFC 6749 §5.2 JSON, ``Cache-Control: no-store``; ``invalid_client`` is 401 with a Basic
        challenge (a 401 must carry one, RFC 9110 §15.5.2); ``use_dpop_nonce`` adds ``DPoP-Nonce``."""
        if error.redirect_uri:
            return super().handle_error_response(request, error)
        body: dict[str, str] = {"error": error.error}
        if error.description:
            body["error_description"] = safe_text(str(error.description))
        status = error.status_code or 400
        headers = [("Content-Type", "application/json"), *NO_STORE]
        if error.error == "invalid_client":
            status = 401
            headers.append(("WWW-Authenticate", 'Basic realm="idp-mock", charset="UTF-8"'))
        if isinstance(error, UseDpopNonceError):
            headers.append(("DPoP-Nonce", error.nonce))
        return Response(json.dumps(body), status=status, headers=headers)
