"""Registered clients (RFC 7591 metadata) and users: the built-in demo set plus ``[[client]]`` tables.

:class:`Client` implements authlib's ``ClientMixin`` so authlib's grants and client authentication
can use it unchanged.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin

from tokenguard.core.jwk import public_jwk

from .config import ClientConfig, ConfigError, IdpConfig, UserConfig
from .pki import MTLS_SUBJECT, ensure_demo_pki, load_cert, x5c_jwks

SECRET_METHODS = ("client_secret_basic", "client_secret_post")
MTLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
AUTH_METHODS = (*SECRET_METHODS, "private_key_jwt", *MTLS_METHODS, "none")
GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")
SAN_FIELDS = ("tls_client_auth_san_dns", "tls_client_auth_san_uri", "tls_client_auth_san_ip",
              "tls_client_auth_san_email")
DEMO_REDIRECT = "http://127.0.0.1:8765/callback"

DEMO_USERS = (UserConfig("alice", "Alice Example", "alice@example.test", "alice"),
              UserConfig("bob", "Bob Example", "bob@example.test", "bob"))


@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered client. ``auth_methods`` lists what it may use; ``"none"`` marks a public client."""

    meta: ClientConfig
    auth_methods: tuple[str, ...]

    @property
    def client_id(self) -> str:
        return self.meta.client_id

    @property
    def is_public(self) -> bool:
        return self.auth_methods == ("none",)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.meta.scope.split())

    # -- authlib ClientMixin ---------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.meta.redirect_uris[0] if len(self.meta.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """RFC 6749 §3.3: a request for an unregistered scope fails; no scope means the registered set."""
        if not scope:
            return self.meta.scope
        requested = scope.split()
        if not set(requested) <= set(self.scopes):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.meta.redirect_uris  # exact string match (RFC 9700 §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.meta.client_secret
        return secret is not None and hmac.compare_digest(secret.encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.meta.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.meta.grant_types

    # -- RFC 8705 / RFC 7523 material ------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        if self.meta.jwks is not None:
            return self.meta.jwks
        if self.meta.jwks_file:
            return dict(json.loads(Path(self.meta.jwks_file).read_text(encoding="utf-8")))
        return {"keys": []}


def _check(meta: ClientConfig) -> Client:
    where = f"client {meta.client_id!r}"
    source = "<clients>"
    method = meta.token_endpoint_auth_method
    methods = tuple(m.strip() for m in method.split())
    if not methods or any(m not in AUTH_METHODS for m in methods):
        raise ConfigError(source, where, f"token_endpoint_auth_method must be among {', '.join(AUTH_METHODS)}")
    if "none" in methods and len(methods) > 1:
        raise ConfigError(source, where, "a public client (none) has no other authentication method")
    if set(methods) & set(SECRET_METHODS) and not meta.client_secret:
        raise ConfigError(source, where, f"client_secret is required for {method}")
    if bad := set(meta.grant_types) - set(GRANT_TYPES):
        raise ConfigError(source, where, f"unsupported grant_types {sorted(bad)}")
    if "none" in methods and "client_credentials" in meta.grant_types:
        raise ConfigError(source, where, "a public client cannot use client_credentials (RFC 6749 §4.4)")
    if "authorization_code" in meta.grant_types and not meta.redirect_uris:
        raise ConfigError(source, where, "authorization_code needs redirect_uris")
    if "tls_client_auth" in methods:
        subject = [f for f in ("tls_client_auth_subject_dn", *SAN_FIELDS) if getattr(meta, f)]
        if len(subject) != 1:  # RFC 8705 §2.1.2: exactly one
            raise ConfigError(source, where, "tls_client_auth needs exactly one tls_client_auth_subject_dn / _san_*")
    if meta.jwks is not None and not isinstance(meta.jwks.get("keys"), list):
        raise ConfigError(source, where, "jwks must be a JWK Set table with a keys array")
    if meta.access_token_format not in ("jwt", "opaque"):
        raise ConfigError(source, where, "access_token_format must be jwt or opaque")
    if meta.dpop_bound_access_tokens and meta.tls_client_certificate_bound_access_tokens:
        raise ConfigError(source, where, "a client binds its tokens one way, DPoP or certificate, not both")
    return Client(meta, methods)


def demo_clients(state_dir: Path) -> list[ClientConfig]:
    """The built-in clients documented in idp_mock/README.md."""
    demo = ensure_demo_pki(state_dir)
    jwt1 = json.loads((demo / "jwt1.jwk").read_text(encoding="utf-8"))
    everything = ("client_credentials", "authorization_code", "refresh_token")
    return [
        ClientConfig("conf1", "conf1-secret", "client_secret_basic client_secret_post", everything,
                     (DEMO_REDIRECT,)),
        ClientConfig("pub1", None, "none", ("authorization_code", "refresh_token"), (DEMO_REDIRECT,)),
        ClientConfig("dpop1", "dpop1-secret", "client_secret_basic client_secret_post", everything,
                     (DEMO_REDIRECT,), dpop_bound_access_tokens=True),
        ClientConfig("mtls1", None, "tls_client_auth", ("client_credentials", "refresh_token"),
                     tls_client_certificate_bound_access_tokens=True, tls_client_auth_subject_dn=MTLS_SUBJECT),
        ClientConfig("selfsigned1", None, "self_signed_tls_client_auth", ("client_credentials",),
                     tls_client_certificate_bound_access_tokens=True,
                     jwks=x5c_jwks(load_cert(demo / "selfsigned1.crt"))),
        ClientConfig("jwt1", None, "private_key_jwt", everything, (DEMO_REDIRECT,),
                     jwks={"keys": [public_jwk(jwt1)]}),
        ClientConfig("opaque1", "opaque1-secret", "client_secret_basic", ("client_credentials",),
                     access_token_format="opaque"),
        ClientConfig("rs1", "rs1-secret", "client_secret_basic client_secret_post", (), scope="",
                     introspect=True),
    ]


class Registry:
    """Clients and users by id; ``[[client]]`` tables replace demo clients of the same id."""

    def __init__(self, config: IdpConfig) -> None:
        metas: dict[str, ClientConfig] = {}
        if config.demo_clients:
            metas.update((c.client_id, c) for c in demo_clients(config.state_path))
        metas.update((c.client_id, c) for c in config.clients)
        self.clients = {cid: _check(replace(meta)) for cid, meta in metas.items()}
        users: Iterable[UserConfig] = config.users or DEMO_USERS
        self.users = {u.sub: u for u in users}
        if config.demo_user not in self.users:
            raise ConfigError("<config>", "demo_user", f"{config.demo_user!r} is not a configured user")

    def client(self, client_id: object) -> Client | None:
        return self.clients.get(client_id) if isinstance(client_id, str) else None
