"""Token issuance: RFC 9068 JWT access tokens (``typ: at+jwt``, signed with the IdP's current key via
joserfc) or opaque ones, per client; refresh tokens; the records behind introspection and revocation.

Binding (RFC 7800 ``cnf``) is decided by the grant and handed in: ``{"jkt": …}`` for DPoP (RFC 9449
§6), ``{"x5t#S256": …}`` for certificates (RFC 8705 §3.1), never both.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import TokenMixin
from joserfc import jwt

from .config import IdpConfig
from .keys import KeyManager
from .store import GrantStore, credential_key

ACCESS = "access_token"
REFRESH = "refresh_token"


@dataclass(frozen=True)
class Binding:
    """How the issued access token is sender-constrained: ``cnf`` or nothing (bearer)."""

    cnf: Mapping[str, str] | None = None

    @property
    def token_type(self) -> str:
        return "DPoP" if self.cnf and "jkt" in self.cnf else "Bearer"


BEARER = Binding()


class StoredToken(TokenMixin):
    """A stored access or refresh token as authlib's grants and endpoints expect it."""

    def __init__(self, kind: str, key: str, record: Mapping[str, Any]) -> None:
        self.kind = kind
        self.key = key
        self.record = dict(record)

    @property
    def family(self) -> str:
        return str(self.record.get("_family", ""))

    def check_client(self, client: Any) -> bool:
        return bool(self.record.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.record.get("scope", ""))

    def get_expires_in(self) -> int:
        return int(self.record["exp"] - self.record["iat"])

    def is_expired(self) -> bool:
        return bool(self.record.get("_expired"))

    def is_revoked(self) -> bool:
        return bool(self.record.get("_revoked"))


class TokenService:
    def __init__(self, config: IdpConfig, keys: KeyManager, store: GrantStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.keys = keys
        self.store = store
        self.clock = clock

    def _sign(self, claims: dict[str, Any]) -> str:
        kid, alg, key = self.keys.signing_key()
        header = {"typ": "at+jwt", "alg": alg, "kid": kid}
        return jwt.encode(header, claims, key, algorithms=[alg])

    def issue(self, *, client: Any, grant_type: str, sub: str, scope: str, audience: str | list[str],
              binding: Binding, family: str | None = None, refresh: str = "none",
              refresh_cnf: Mapping[str, str] | None = None, resource: str | None = None,
              auth_time: int | None = None) -> dict[str, Any]:
        """Issue an access token (and a refresh token when ``refresh == "new"``); returns the RFC 6749
        §5.1 response body. Records are stored under the token's hash, in grant ``family``."""
        now = int(self.clock())
        lifetime = self.config.access_token_lifetime
        family = family or uuid.uuid4().hex
        jti = str(uuid.uuid4())
        claims: dict[str, Any] = {"iss": self.config.issuer, "aud": audience, "sub": sub,
                                  "client_id": client.client_id, "iat": now, "exp": now + lifetime, "jti": jti}
        if scope:
            claims["scope"] = scope
        if auth_time is not None:
            claims["auth_time"] = auth_time
        if binding.cnf:
            claims["cnf"] = dict(binding.cnf)
        if client.meta.access_token_format == "opaque":
            access_token = "at_" + secrets.token_urlsafe(32)
        else:
            access_token = self._sign(claims)
        record = claims | {"token_type": binding.token_type, "format": client.meta.access_token_format,
                           "grant_type": grant_type}
        self.store.put(ACCESS, credential_key(access_token), record, lifetime, family)
        body: dict[str, Any] = {"access_token": access_token, "token_type": binding.token_type,
                                "expires_in": lifetime}
        if scope:
            body["scope"] = scope
        if refresh == "new":
            refresh_token = "rt_" + secrets.token_urlsafe(32)
            rt_life = self.config.refresh_token_lifetime
            rt_record: dict[str, Any] = {"client_id": client.client_id, "sub": sub, "scope": scope,
                                         "iat": now, "exp": now + rt_life, "iss": self.config.issuer,
                                         "resource": resource, "auth_time": auth_time}
            if refresh_cnf:
                rt_record["cnf"] = dict(refresh_cnf)
            self.store.put(REFRESH, credential_key(refresh_token), rt_record, rt_life, family)
            body["refresh_token"] = refresh_token
        return body

    def find(self, token: str, hint: str | None = None) -> StoredToken | None:
        """The stored access or refresh token (expired or revoked ones included), or None."""
        key = credential_key(token)
        kinds = (REFRESH, ACCESS) if hint == REFRESH else (ACCESS, REFRESH)
        for kind in kinds:
            record = self.store.get(kind, key)
            if record is not None:
                return StoredToken(kind, key, record)
        return None

    def revoke(self, token: StoredToken) -> None:
        """RFC 7009 §2.1: revoking a refresh token also revokes the access tokens of its grant."""
        self.store.revoke(token.kind, token.key)
        if token.kind == REFRESH:
            self.store.revoke_family(token.family)

    def introspection(self, token: StoredToken) -> dict[str, Any]:
        """RFC 7662 §2.2 members of an active token; ``cnf`` top-level (RFC 9449 §6.2, RFC 8705 §3.2)."""
        rec = token.record
        body: dict[str, Any] = {"active": True, "iss": rec.get("iss", self.config.issuer),
                                "client_id": rec["client_id"], "sub": rec["sub"], "iat": rec["iat"],
                                "exp": rec["exp"]}
        if rec.get("scope"):
            body["scope"] = rec["scope"]
        if token.kind == ACCESS:
            body.update(aud=rec["aud"], jti=rec["jti"], token_type=rec["token_type"])
            if rec.get("cnf"):
                body["cnf"] = rec["cnf"]
        if rec.get("sub") and rec.get("grant_type") != "client_credentials":
            body["username"] = rec["sub"]
        return body
