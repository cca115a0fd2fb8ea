"""The issuer's signing keys (RFC 9068 §4: keys only from the AS metadata's ``jwks_uri``).

Keys are cached with a TTL. An unknown ``kid`` triggers at most one re-fetch per cool-down, so a
flood of random kids costs one fetch, not one per request (spec JWT-RS-10). When the IdP is down,
keys already fetched keep serving; with no key ever fetched the verifier fails closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tokenguard.core.errors import InvalidToken, VerifierUnavailable
from tokenguard.core.jwk import ASYMMETRIC_ALGS, PRIVATE_MEMBERS, JWKError, PublicKey, import_public_key, key_fits_alg
from tokenguard.core.metadata import FetchError, FetchJson, discover

DEFAULT_TTL = 300  # seconds a fetched key set is fresh
DEFAULT_COOLDOWN = 30  # at most one unknown-kid re-fetch per this many seconds


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    jwk: Mapping[str, Any]
    key: PublicKey


class JwksCache:
    """Signing keys of one issuer, refreshed on TTL expiry and (rate-limited) on unknown ``kid``."""

    def __init__(self, issuer: str, *, jwks_uri: str | None, fetch: FetchJson, ttl: float = DEFAULT_TTL,
                 cooldown: float = DEFAULT_COOLDOWN, clock: Callable[[], float] = time.monotonic,
                 on_fetch: Callable[[str, bool], None] | None = None) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self._fetch = fetch
        self.ttl = ttl
        self.cooldown = cooldown
        self._clock = clock
        self._on_fetch = on_fetch
        self._keys: list[_Key] = []
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._last_kid_refresh: float | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def has_keys(self) -> bool:
        return bool(self._keys)

    def _resolve_jwks_uri(self) -> str:
        if self.jwks_uri is None:
            uri = discover(self.issuer, self._fetch).get("jwks_uri")
            if not isinstance(uri, str):
                raise FetchError("issuer metadata has no jwks_uri")
            self.jwks_uri = uri
        return self.jwks_uri

    def refresh(self) -> bool:
        """Fetch the JWKS now; on failure keep the old keys. Returns whether the fetch succeeded."""
        self._last_attempt = self._clock()
        try:
            document = self._fetch(self._resolve_jwks_uri())
            keys = self._parse(document)
        except FetchError as exc:
            self.last_error = str(exc)
            if self._on_fetch:
                self._on_fetch(self.issuer, False)
            return False
        self._keys, self._fetched_at, self.last_error = keys, self._clock(), None
        if self._on_fetch:
            self._on_fetch(self.issuer, True)
        return True

    def load_if_due(self) -> None:
        """Try to get keys when there are none, at most once per few seconds (readiness probes)."""
        now = self._clock()
        if not self._keys and (self._last_attempt is None or now - self._last_attempt >= min(self.cooldown, 5.0)):
            with self._lock:
                self.refresh()

    @staticmethod
    def _parse(document: Mapping[str, Any]) -> list[_Key]:
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise FetchError("JWKS has no keys array")
        keys = []
        for jwk in raw_keys:
            if not isinstance(jwk, dict) or PRIVATE_MEMBERS.intersection(jwk):
                continue  # symmetric or private keys never verify access tokens
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                keys.append(_Key(jwk.get("kid") if isinstance(jwk.get("kid"), str) else None, jwk,
                                 import_public_key(jwk)))
            except JWKError:
                continue
        return keys

    def _candidates(self, kid: str | None, alg: str) -> list[PublicKey]:
        return [k.key for k in self._keys
                if (kid is None or k.kid == kid) and key_fits_alg(k.jwk, alg)
                and k.jwk.get("alg", alg) == alg]

    def keys_for(self, kid: str | None, alg: str) -> list[PublicKey]:
        """Keys that may have signed a token with this ``kid`` and ``alg``."""
        if alg not in ASYMMETRIC_ALGS:
            return []
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at > self.ttl:
            with self._lock:
                stale = self._fetched_at is None or now - self._fetched_at > self.ttl
                if stale and (self._last_attempt is None or now - self._last_attempt >= min(self.cooldown, 5.0)):
                    self.refresh()
        if not self._keys:
            raise VerifierUnavailable("jwks_unavailable", "no signing keys could be fetched for the issuer")
        found = self._candidates(kid, alg)
        if not found and kid is not None:
            with self._lock:
                found = self._candidates(kid, alg)
                now = self._clock()
                if not found and (self._last_kid_refresh is None or now - self._last_kid_refresh >= self.cooldown):
                    self._last_kid_refresh = now  # the cool-down limits kid-triggered fetches only
                    self.refresh()
                    found = self._candidates(kid, alg)
        if not found:
            raise InvalidToken("token_unknown_kid", "No key of the issuer matches the token")
        return found
