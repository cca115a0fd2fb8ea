"""Spec §0 fixtures and §0.2 outcome notation for the core tests.

Tokens and proofs are minted here with joserfc (the signing math) and hand-built JOSE segments, never
with the code under test, so that the tests can catch the core's mistakes.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import support
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jws import JWSRegistry

from tokenguard.client.challenges import Challenge, parse_challenges
from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.introspection import Introspector
from tokenguard.core.jwks import JwksCache
from tokenguard.core.metadata import FetchError
from tokenguard.core.nonce import RS_LABEL, NonceIssuer
from tokenguard.core.policy import Policy, Route
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.request import AuthRequest, ClientCertificate
from tokenguard.core.verifier import Verifier
from tokenguard.settings.wiring import core_bindings
from tokenguard.web.certs import CertificateError, read_client_cert
from tokenguard.web.responses import Answer, Responder

T0 = 1_700_000_000
ISS = "https://as.test"
AUD = "https://api.test"
JWKS_URI = "https://as.test/jwks"
INTROSPECT_URI = "https://as.test/introspect"
URL = "https://api.test/resource?x=1"
HTU = "https://api.test/resource"
WRITE_URL = "https://api.test/write"
ALGS = "ES256 PS256 EdDSA"
NONCE_SECRET = b"0123456789abcdef-nonce-secret"
NQCHAR = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
RFC6750_TEXT = re.compile(r"^[\x20\x21\x23-\x5B\x5D-\x7E]*$")
DROP: Any = object()  # a header/claim override that removes the member


def b64u(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def sha256_b64u(data: bytes) -> str:
    return b64u(hashlib.sha256(data).digest())


def thumb(pub: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint computed independently of tokenguard.core.jwk."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[pub["kty"]]
    canon = json.dumps({m: pub[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return sha256_b64u(canon.encode())


def _override(base: dict[str, Any], changes: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(base)
    for name, value in (changes or {}).items():
        if value is DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def sign_jws(header: Mapping[str, Any], payload: Any, key: Any, alg: str) -> str:
    """Compact JWS over a hand-built header (any members, even without ``alg``), signed by joserfc's
    algorithm implementation for ``alg`` (raw R‖S for ECDSA)."""
    header_segment = b64u_json(dict(header))
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    signing_input = f"{header_segment}.{b64u(body)}"
    algorithm = JWSRegistry.algorithms[alg]
    signature = algorithm.sign(signing_input.encode(), key)
    return f"{signing_input}.{b64u(signature)}"


def private_key_jwk(key: Any) -> dict[str, Any]:
    return dict(key.as_dict(private=True))


def public_key_jwk(key: Any) -> dict[str, Any]:
    return {k: v for k, v in key.as_dict(private=False).items() if k not in ("kid", "alg", "use", "key_ops")}


# -- certificates ----------------------------------------------------------------------------------
def make_cert(key: ec.EllipticCurvePrivateKey, cn: str, serial: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime(2023, 1, 1, tzinfo=datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def escaped_pem(cert: x509.Certificate) -> str:
    """nginx ``$ssl_client_escaped_cert``: the PEM, URL-encoded."""
    return urllib.parse.quote(cert_pem(cert), safe="")


def x5t(cert: x509.Certificate) -> str:
    return sha256_b64u(cert_der(cert))


# -- fakes -----------------------------------------------------------------------------------------
class Clock(support.Clock):
    """The shared settable clock, starting at the spec's ``T0``."""

    def __init__(self, now: float = T0) -> None:
        super().__init__(now)


class FakeJwks:
    """The AS ``jwks_uri``: serves a list of public JWKs, counts fetches, can be taken down."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.calls = 0
        self.down = False

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.calls += 1
        if self.down:
            raise FetchError("connection refused")
        assert url == JWKS_URI
        return {"keys": [dict(k) for k in self.keys]}


class FakeIntrospection:
    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Mapping[str, str], tuple[str, str]]] = []
        self.down = False

    def __call__(self, url: str, form: Mapping[str, str], auth: tuple[str, str]) -> Mapping[str, Any]:
        from tokenguard.core.errors import VerifierUnavailable

        self.calls.append((url, dict(form), auth))
        if self.down:
            raise VerifierUnavailable("introspection_unavailable", "introspection failed: ConnectionError")
        return self.answers.get(form["token"], {"active": False})


# -- keys bundle -----------------------------------------------------------------------------------
@dataclass
class Keys:
    K1: Any
    K2: Any
    KR: Any
    KE: Any
    AS1: Any
    AS2: Any
    ATTACKER: Any
    C1: Any
    C2: Any
    CERT1: x509.Certificate
    CERT1b: x509.Certificate
    CERT2: x509.Certificate


ROUTES = (
    Route(name="resource", path="/resource", methods=("GET",), scopes=("read",)),
    Route(name="write", path="/write", methods=("POST",), scopes=("write",)),
    Route(name="other", path="/*", methods=("GET",), scopes=("read",)),
)


@dataclass
class Env:
    """One test's world: clock, fake AS, keys, and the verifier built from core classes."""

    keys: Keys
    clock: Clock = field(default_factory=Clock)
    jwks: FakeJwks = field(init=False)
    introspection: FakeIntrospection = field(default_factory=FakeIntrospection)

    def __post_init__(self) -> None:
        self.jwks = FakeJwks([self.as_public(self.keys.AS1, "as-1")])
        self.build()

    @staticmethod
    def as_public(key: Any, kid: str) -> dict[str, Any]:
        pub = public_key_jwk(key)
        pub.update(kid=kid, use="sig", alg="RS256")
        return pub

    def build(self, *, auth_request_mode: bool = True, nonce: bool = False, fail_status: int = 500,
              cert_format: str = "escaped-pem", routes: tuple[Route, ...] | None = None,
              jwks_cooldown: float = 30.0, clock: Callable[[], float] | None = None) -> Verifier:
        clk = clock or self.clock
        self.jwks_cache = JwksCache(ISS, jwks_uri=JWKS_URI, fetch=self.jwks, ttl=300.0, cooldown=jwks_cooldown,
                                    clock=clk)
        self.introspector = Introspector(INTROSPECT_URI, "rs1", "rs1-secret", post=self.introspection,
                                         cache_ttl=60.0, clock=clk)
        self.tokens = AccessTokenValidator(
            [Issuer(ISS, jwks=self.jwks_cache, introspector=self.introspector)],
            audiences=[AUD], leeway=60, clock=clk)
        self.replay = MemoryReplayStore(clock=clk)
        self.nonces = NonceIssuer(NONCE_SECRET, RS_LABEL, clock=clk)
        self.dpop = DpopVerifier(algs=("ES256", "PS256", "EdDSA"), replay=self.replay, nonces=self.nonces,
                                 iat_past=60, iat_future=15, clock=clk)
        if routes is None:
            routes = tuple(dataclasses.replace(r, dpop_nonce=nonce) for r in ROUTES)
        self.policy = Policy(routes=routes)
        self.cert_format = cert_format
        self.verifier = Verifier(self.tokens, core_bindings(self.dpop), self.policy, replay=self.replay,
                                 nonces=self.nonces)
        self.responder = Responder(realm="tokenguard", auth_request_mode=auth_request_mode,
                                   dpop_algs=self.dpop.algs, fail_status=fail_status)
        return self.verifier

    def cert(self, header_value: str | None) -> ClientCertificate | None:
        """What the proxy adapter hands the core for a certificate header in this env's format."""
        try:
            der = read_client_cert(header_value, self.cert_format)
        except CertificateError as exc:
            return ClientCertificate(problem=str(exc))
        return None if der is None else ClientCertificate(der)

    # -- tokens --------------------------------------------------------------------------------------
    def token(self, claims: Mapping[str, Any] | None = None, header: Mapping[str, Any] | None = None, *,
              key: Any = None, alg: str = "RS256") -> str:
        base_claims = {"iss": ISS, "aud": AUD, "sub": "u1", "client_id": "c1", "iat": T0, "exp": T0 + 600,
                       "jti": str(uuid.uuid4()), "scope": "read"}
        base_header = {"typ": "at+jwt", "alg": alg, "kid": "as-1"}
        return sign_jws(_override(base_header, header), _override(base_claims, claims),
                        key if key is not None else self.keys.AS1, alg)

    @property
    def at_b(self) -> str:
        return self._memo("at_b", lambda: self.token())

    @property
    def at_d(self) -> str:
        return self._memo("at_d", lambda: self.token({"cnf": {"jkt": self.jkt1}}))

    @property
    def at_m(self) -> str:
        return self._memo("at_m", lambda: self.token({"cnf": {"x5t#S256": x5t(self.keys.CERT1)}}))

    def _memo(self, name: str, make: Callable[[], str]) -> str:
        cache = self.__dict__.setdefault("_tokens", {})
        if name not in cache:
            cache[name] = make()
        return cache[name]

    @property
    def jkt1(self) -> str:
        return thumb(public_key_jwk(self.keys.K1))

    # -- proofs --------------------------------------------------------------------------------------
    def proof(self, claims: Mapping[str, Any] | None = None, header: Mapping[str, Any] | None = None, *,
              key: Any = None, alg: str = "ES256", token: str | None | Any = None, sign_key: Any = None,
              htm: str = "GET", htu: str = HTU) -> str:
        """Spec ``P()``: typ dpop+jwt, ES256, jwk = pub(K1), jti/htm/htu/iat/ath, signed by K1."""
        key = key if key is not None else self.keys.K1
        access_token = self.at_d if token is None else token
        base_claims: dict[str, Any] = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": int(self.clock())}
        if access_token is not DROP:
            base_claims["ath"] = sha256_b64u(access_token.encode())
        base_header = {"typ": "dpop+jwt", "alg": alg, "jwk": public_key_jwk(key)}
        return sign_jws(_override(base_header, header), _override(base_claims, claims),
                        sign_key if sign_key is not None else key, alg)

    # -- requests ------------------------------------------------------------------------------------
    def b_dpop(self, proof: str | None = None, *, url: str = URL, method: str = "GET",
               token: str | None = None, **proof_args: Any) -> AuthRequest:
        token = token or self.at_d
        if proof is None:
            proof = self.proof(token=token, htm=method, **proof_args)
        return AuthRequest.for_url(method, url, authorization=(f"DPoP {token}",), dpop=(proof,))

    def b_bearer(self, token: str | None = None, *, url: str = URL, method: str = "GET") -> AuthRequest:
        return AuthRequest.for_url(method, url, authorization=(f"Bearer {token or self.at_b}",))

    def b_mtls(self, cert_header: str | None | Any = DROP, token: str | None = None) -> AuthRequest:
        value = escaped_pem(self.keys.CERT1) if cert_header is DROP else cert_header
        return AuthRequest.for_url("GET", URL, authorization=(f"Bearer {token or self.at_m}",),
                                   client_cert=self.cert(value))

    def decide(self, request: AuthRequest) -> Answer:
        """The core's decision, rendered as ``/auth`` answers it (status, challenges, headers)."""
        return self.responder.render(self.verifier.decide(request))


# -- outcome notation (docs/conformance-cases.md, Notation) --------------------------------------
def header_values(decision: Answer, name: str) -> list[str]:
    return [v for n, v in decision.headers if n.lower() == name.lower()]


def challenges(decision: Answer) -> dict[str, Challenge]:
    parsed = parse_challenges(header_values(decision, "WWW-Authenticate"))
    by_scheme: dict[str, Challenge] = {}
    for ch in parsed:
        key = ch.scheme.lower()
        assert key not in by_scheme, f"scheme {ch.scheme} challenged twice"
        assert ch.scheme in ("Bearer", "DPoP"), f"non-canonical scheme spelling {ch.scheme}"
        by_scheme[key] = ch
    for ch in parsed:
        for name in ("error", "error_description"):
            value = ch.get(name)
            assert value is None or RFC6750_TEXT.match(value), f"{name} outside the RFC 6750 charset: {value!r}"
        if ch.scheme.lower() == "dpop":
            assert ch.get("algs") == ALGS, f"DPoP challenge algs={ch.get('algs')!r}"
            assert "none" not in ch.get("algs").split()
    return by_scheme


def _common_deny(d: Answer, status: int, reason: str | None) -> dict[str, Challenge]:
    assert not d.allow
    assert d.status == status, f"status {d.status} (reason {d.reason}), want {status}"
    if reason is not None:
        assert d.reason == reason, f"reason {d.reason}, want {reason}"
    assert header_values(d, "Cache-Control") == ["no-store"]
    assert header_values(d, "X-Auth-Error") == [d.reason]
    return challenges(d)


def assert_allowed(d: Answer) -> None:
    assert d.allow and d.status == 200, f"denied: {d.status} {d.reason} {d.error}"
    assert not header_values(d, "WWW-Authenticate")


def assert_401_none(d: Answer, reason: str | None = None) -> None:
    """``401·∅``: Bearer and DPoP challenges, no error anywhere."""
    chs = _common_deny(d, 401, reason)
    assert set(chs) == {"bearer", "dpop"}, f"challenges {list(chs)}"
    for ch in chs.values():
        assert ch.get("error") is None, f"{ch.scheme} carries error {ch.get('error')}"
    assert d.error is None


def assert_D(d: Answer, error: str, reason: str | None = None, status: int = 401) -> None:
    """``401·D(e)``: the DPoP challenge has ``error=e`` and algs; a Bearer challenge has no error."""
    chs = _common_deny(d, status, reason)
    assert "dpop" in chs, "no DPoP challenge"
    assert chs["dpop"].get("error") == error, f"DPoP error={chs['dpop'].get('error')}, want {error}"
    if "bearer" in chs:
        assert chs["bearer"].get("error") is None, "Bearer challenge must not carry the error"
    assert d.error == error


def assert_B(d: Answer, error: str, reason: str | None = None, status: int = 401) -> None:
    """``401·B(e)``: the Bearer challenge has ``error=e``; the DPoP challenge (with algs) has none."""
    chs = _common_deny(d, status, reason)
    assert "bearer" in chs and "dpop" in chs, f"challenges {list(chs)}"
    assert chs["bearer"].get("error") == error, f"Bearer error={chs['bearer'].get('error')}, want {error}"
    assert chs["dpop"].get("error") is None, "DPoP challenge must not carry the error"
    assert d.error == error


def assert_400star(d: Answer, auth_request_mode: bool, schemes: tuple[str, ...],
                   reason: str | None = None) -> None:
    """``400*·X(invalid_request)``: 400 directly, 401 with the same challenge behind auth_request."""
    chs = _common_deny(d, 401 if auth_request_mode else 400, reason)
    for scheme in schemes:
        assert chs[scheme.lower()].get("error") == "invalid_request", f"{scheme} lacks invalid_request"
    assert d.error == "invalid_request"


def assert_nonce(d: Answer) -> str:
    """``+N``: exactly one DPoP-Nonce of NQCHARs and Cache-Control: no-store."""
    nonces = header_values(d, "DPoP-Nonce")
    assert len(nonces) == 1, f"{len(nonces)} DPoP-Nonce headers"
    assert NQCHAR.match(nonces[0])
    assert header_values(d, "Cache-Control") == ["no-store"]
    return nonces[0]


def assert_403_scope(d: Answer, scheme: str, scope: str) -> None:
    chs = _common_deny(d, 403, "insufficient_scope")
    ch = chs[scheme.lower()]
    assert ch.get("error") == "insufficient_scope"
    assert ch.get("scope") == scope
    for other, och in chs.items():
        if other != scheme.lower():
            assert och.get("error") is None
