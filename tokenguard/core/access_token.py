"""Access-token validation: RFC 9068 JWT access tokens, or opaque tokens via RFC 7662.

Every failure is ``invalid_token`` (RFC 9068 §4). A JWT's verified claims are cached by the token's
hash until its ``exp``: its signature cannot change, while time-based checks run on every request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenguard.core.b64 import b64url_encode
from tokenguard.core.errors import InvalidToken, VerifierUnavailable, safe_text
from tokenguard.core.introspection import Introspector
from tokenguard.core.jwks import JwksCache
from tokenguard.core.jws import JWSError, parse_compact, parse_json_object, verify_signature
from tokenguard.core.trace import ABSENT, Trace

#: RFC 9864 §2.2: the fully-specified ``Ed25519`` / ``Ed448`` beside the polymorphic ``EdDSA`` they replace.
DEFAULT_TOKEN_ALGS = ("RS256", "PS256", "ES256", "EdDSA", "Ed25519", "Ed448")
RFC9068 = "RFC 9068 §4"
RFC9068_REQUIRED = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
DEFAULT_LEEWAY = 60  # seconds of clock skew for exp / nbf
DEFAULT_CACHE_SIZE = 10000  # verified tokens remembered until their exp


@dataclass(frozen=True, slots=True)
class Issuer:
    """A trusted issuer: its identifier, signing keys, and optionally its introspection endpoint."""

    issuer: str
    jwks: JwksCache | None = None
    introspector: Introspector | None = None
    audiences: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What the verifier knows about a valid access token."""

    issuer: str
    claims: Mapping[str, Any] = field(repr=False)
    source: str  # "jwt" or "introspection"
    #: RFC 9449 §4.2 ``ath`` of this token: base64url SHA-256 of its ASCII text (the same hash as the
    #: cache key, so a DPoP proof's ``ath`` is compared without hashing the token again)
    ath: str = ""

    @property
    def cnf(self) -> Any:
        return self.claims.get("cnf")

    @property
    def subject(self) -> str:
        return str(self.claims.get("sub", ""))

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id", ""))

    @property
    def scopes(self) -> tuple[str, ...]:
        scope = self.claims.get("scope", "")
        if isinstance(scope, list):
            return tuple(str(s) for s in scope)
        return tuple(str(scope).split())


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _quoted(value: Any, limit: int = 80) -> str:
    """An attacker-chosen claim value, fit for a log line and an ``error_description`` (RFC 6750 §3
    charset, truncated)."""
    if not isinstance(value, str):
        return "(none)" if value is None else f"(a {type(value).__name__})"
    return f"'{safe_text(value, limit)}{'...' if len(value) > limit else ''}'"


def _media_type(typ: Any) -> str | None:
    if not isinstance(typ, str):
        return None
    typ = typ.lower()
    return typ[len("application/"):] if typ.startswith("application/") else typ


class AccessTokenValidator:
    def __init__(self, issuers: Sequence[Issuer], *, audiences: Collection[str],
                 algs: Collection[str] = DEFAULT_TOKEN_ALGS, leeway: int = DEFAULT_LEEWAY,
                 required_claims: Collection[str] = RFC9068_REQUIRED, require_typ: bool = True,
                 clock: Callable[[], float] = time.time, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.issuers = {i.issuer: i for i in issuers}
        self._introspecting = [i for i in issuers if i.introspector is not None]
        self.audiences = tuple(audiences)
        self.algs = frozenset(algs)
        self.leeway = leeway
        self.required_claims = tuple(required_claims)
        self.require_typ = require_typ
        self.clock = clock
        self._cache: OrderedDict[bytes, AccessToken] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def readiness(self) -> dict[str, str]:
        """Per issuer: "ok" when its keys can verify tokens or it has an introspection endpoint, else why not.

        Never waits on an issuer (beyond a process's first fetch, bounded by ``token.key_wait``).
        """
        if not self.issuers:
            return {"issuers": "no issuer configured"}
        checks = {}
        for issuer in self.issuers.values():
            status = issuer.jwks.status() if issuer.jwks is not None else "no keys"
            checks[f"issuer {issuer.issuer}"] = "ok" if issuer.introspector is not None else status
        return checks

    def validate(self, token: str, trace: Trace | None = None) -> AccessToken:
        """The token's verified claims; ``trace`` records each check."""
        digest = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if trace is not None:
                trace.add("signature", "RFC 7515 §5.2", True, "a valid signature by a trusted issuer",
                          f"verified when first seen (cached until exp), issuer {cached.issuer}")
            self._check_times(cached.claims, trace)
            return cached
        looks_like_jwt = self._looks_like_jwt(token)
        if trace is not None:
            trace.add("token format", RFC9068, looks_like_jwt or bool(self._introspecting),
                      "a JWT (RFC 9068), or an opaque token with an introspection endpoint (RFC 7662)",
                      f"a JWT, {token.count('.') + 1} segments" if looks_like_jwt else
                      f"an opaque token of {len(token)} characters")
        if looks_like_jwt:
            result = self._validate_jwt(token, trace)
        elif self._introspecting:
            result = self._introspect(token, trace)
        else:
            raise InvalidToken("token_malformed", "Access token is not a JWT")
        result = dataclasses.replace(result, ath=b64url_encode(digest))
        if result.source == "jwt":  # introspection results live in the introspector's own TTL cache
            with self._lock:
                self._cache[digest] = result
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return result

    @staticmethod
    def _looks_like_jwt(token: str) -> bool:
        """A token whose first segment is a JOSE header is handled as a JWT (and must be a valid one)."""
        if token.count(".") not in (1, 2, 4):
            return False
        try:
            header = parse_json_object(token.split(".", 1)[0], "header")
        except JWSError:
            return False
        return "alg" in header

    def _check_times(self, claims: Mapping[str, Any], trace: Trace | None = None) -> None:
        now = self.clock()
        exp = claims.get("exp")
        expired = exp is not None and exp + self.leeway <= now
        if trace is not None:
            trace.add("exp", "RFC 7519 §4.1.4", not expired,
                      f"> {now - self.leeway:.0f} (now - {self.leeway} s leeway)",
                      ABSENT if exp is None else f"{exp} ({_relative(exp, now)})")
        if expired:
            raise InvalidToken("token_expired", "Access token has expired")
        nbf = claims.get("nbf")
        early = nbf is not None and nbf - self.leeway > now
        if trace is not None and nbf is not None:
            trace.add("nbf", "RFC 7519 §4.1.5", not early, f"<= {now + self.leeway:.0f} (now + {self.leeway} s leeway)",
                      f"{nbf} ({_relative(nbf, now)})")
        if early:
            raise InvalidToken("token_not_yet_valid", "Access token is not yet valid")

    def _check_audience(self, aud: Any, audiences: Collection[str], trace: Trace | None = None) -> None:
        values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        ok = values is not None and any(isinstance(v, str) and v in audiences for v in values)
        if trace is not None:
            trace.add("aud", "RFC 9068 §4, RFC 7519 §4.1.3", ok, f"one of {', '.join(audiences)}", aud)
        if not ok:
            raise InvalidToken("token_wrong_audience", "Access token is not meant for this resource")

    def _validate_jwt(self, token: str, trace: Trace | None) -> AccessToken:
        if token.count(".") == 4:
            if trace is not None:
                trace.add("JWS, not JWE", RFC9068, False, "a signed JWT (3 segments)", "an encrypted JWT (5 segments)")
            raise InvalidToken("token_encrypted", "Encrypted access tokens are not supported")
        try:
            jws = parse_compact(token)
        except JWSError as exc:
            if trace is not None:
                trace.add("well-formed JWT", "RFC 7519 §7.2", False, "header.payload.signature, JSON objects", str(exc))
            raise InvalidToken("token_malformed", "Access token is not a well-formed JWT") from exc
        header, claims = jws.header, jws.payload
        alg = header.get("alg")
        if trace is not None:
            trace.add("well-formed JWT", "RFC 7519 §7.2", True, "header.payload.signature, JSON objects", "ok")
            trace.add("alg", "RFC 9068 §4, RFC 8725 §3.1", isinstance(alg, str) and alg in self.algs,
                      f"one of {', '.join(sorted(self.algs))}", header.get("alg", ABSENT))
        if not isinstance(alg, str) or alg not in self.algs:
            raise InvalidToken("token_bad_alg", "Access token alg is not accepted")
        if self.require_typ:  # RFC 9068 §4, R-13
            ok = _media_type(header.get("typ")) == "at+jwt"
            if trace is not None:
                trace.add("typ", "RFC 9068 §2.1", ok, "at+jwt", header.get("typ", ABSENT))
            if not ok:
                raise InvalidToken("token_bad_typ", "Access token typ is not at+jwt")
        ok = "crit" not in header
        if trace is not None:
            trace.add("crit", "RFC 7515 §4.1.11", ok, ABSENT, header.get("crit", ABSENT))
        if not ok:
            raise InvalidToken("token_crit", "Access token has critical header parameters")
        iss = claims.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if trace is not None:
            trace.add("iss", "RFC 9068 §4", issuer is not None and issuer.jwks is not None,
                      f"a trusted issuer: {', '.join(sorted(self.issuers))}", claims.get("iss", ABSENT))
        if issuer is None or issuer.jwks is None:
            raise InvalidToken("token_unknown_issuer", f"Access token issuer {_quoted(iss)} is not trusted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            if trace is not None:
                trace.add("kid", "RFC 7515 §4.1.4", False, "a string", kid)
            raise InvalidToken("token_malformed", "Access token kid is not a string")
        # Every check that needs no key comes first: a forged token must not make the verifier look up,
        # let alone fetch, keys (an unknown kid can trigger a JWKS fetch).
        missing = [name for name in self.required_claims if name not in claims]
        if trace is not None:
            trace.add("required claims", "RFC 9068 §2.2", not missing, " ".join(self.required_claims),
                      f"missing {' '.join(missing)}" if missing else "all present")
        if missing:
            raise InvalidToken("token_missing_claim", f"Access token lacks the {missing[0]} claim")
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _number(claims[name]):
                if trace is not None:
                    trace.add(name, "RFC 7519 §2 NumericDate", False, "a number", claims[name])
                raise InvalidToken("token_malformed", f"Access token {name} is not a number")
        self._check_audience(claims.get("aud"), issuer.audiences or self.audiences, trace)
        self._check_times(claims, trace)
        # jku, x5u, jwk and x5c are ignored: keys come from the issuer's jwks_uri only
        source = f"{issuer.jwks.jwks_uri or issuer.issuer + ' metadata'}"
        wanted = f"a {alg} key{'' if kid is None else f' with kid {kid}'} from {source}"
        try:
            keys = issuer.jwks.keys_for(kid, alg)
        except (InvalidToken, VerifierUnavailable) as exc:
            if trace is not None:
                trace.add("signing key", "RFC 9068 §4, RFC 8414 §2", False, wanted,
                          f"{exc.description}; last fetch: {issuer.jwks.last_error or 'ok'}")
            raise
        ok = any(verify_signature(alg, key, jws.signing_input, jws.signature) for key in keys)
        if trace is not None:
            trace.add("signing key", "RFC 9068 §4, RFC 8414 §2", True, wanted, f"{len(keys)} candidate key(s)")
            trace.add("signature", "RFC 7515 §5.2", ok, f"a valid {alg} signature",
                      "verifies" if ok else "does not verify")
        if not ok:
            raise InvalidToken("token_bad_signature", "Access token signature does not verify")
        return AccessToken(issuer=issuer.issuer, claims=claims, source="jwt")

    def _introspect(self, token: str, trace: Trace | None) -> AccessToken:
        for issuer in self._introspecting:
            assert issuer.introspector is not None
            try:
                result = issuer.introspector.introspect(token)
            except VerifierUnavailable as exc:
                if trace is not None:
                    trace.add("introspection", "RFC 7662 §2.2", False, f"an answer from {issuer.introspector.endpoint}",
                              exc.description)
                raise
            active = result.get("active") is True
            if trace is not None:
                trace.add("introspection", "RFC 7662 §2.2", active, f"active: true at {issuer.introspector.endpoint}",
                          f"active: {_flag(result.get('active'))}")
            if not active:
                continue
            iss = result.get("iss")
            ok = iss is None or iss == issuer.issuer
            if trace is not None:
                trace.add("iss", "RFC 7662 §2.2", ok, issuer.issuer, ABSENT if iss is None else iss)
            if not ok:
                raise InvalidToken("token_unknown_issuer", "Introspected token names another issuer")
            if "aud" in result:
                self._check_audience(result["aud"], issuer.audiences or self.audiences, trace)
            for name in ("exp", "nbf"):
                if name in result and not _number(result[name]):
                    if trace is not None:
                        trace.add(name, "RFC 7662 §2.2", False, "a number", result[name])
                    raise InvalidToken("token_malformed", f"Introspection {name} is not a number")
            self._check_times(result, trace)
            return AccessToken(issuer=issuer.issuer, claims=result, source="introspection")
        raise InvalidToken("token_inactive", "Access token is not active")


def _flag(value: Any) -> str:
    """A JSON boolean as written (``true``), anything else as what it is."""
    return "true" if value is True else "false" if value is False else ABSENT if value is None else repr(value)


def _relative(moment: Any, now: float) -> str:
    """``exp``/``nbf`` next to the clock: "75 s ago", "in 540 s"."""
    if not _number(moment):
        return "not a number"
    delta = int(moment - now)
    return f"{-delta} s ago" if delta < 0 else f"in {delta} s"
