"""A deliberately simple auth_request verifier used ONLY to test the conformance suite.

It is written independently of tokenguard (a test fixture, not the product) and implements the
docs/conformance-cases.md §1 pins naively, with switches that break exactly one check each:

* ``replay_check=False`` — the jti replay check is gone (DPOP-RS-34/35 must fail),
* ``htu_check=False``   — ``htu`` is not compared (DPOP-RS-24/25/29b must fail).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from werkzeug.wrappers import Request, Response

ALGS = ("ES256", "PS256", "EdDSA")
B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
TOKEN68 = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
ROUTES = {"/resource": ({"GET"}, {"read"}, False), "/write": ({"POST"}, {"write"}, False),
          "/nonce": (None, set(), True)}


class Deny(Exception):
    def __init__(self, status: int, scheme: str | None, error: str | None, reason: str,
                 both: bool = False, scope: str | None = None, nonce: bool = False) -> None:
        super().__init__(reason)
        self.status, self.scheme, self.error, self.reason = status, scheme, error, reason
        self.both, self.scope, self.nonce = both, scope, nonce


def b64d(s: str) -> bytes:
    if not B64URL.match(s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def thumb(jwk: dict[str, Any]) -> str:
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    data = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(s: str) -> int:
    return int.from_bytes(b64d(s), "big")


def verify_sig(alg: str, jwk: dict[str, Any], signing_input: bytes, sig: bytes) -> None:
    """RFC 7518 §3: the key type must match the alg; raises on any problem."""
    if alg == "ES256":
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or len(sig) != 64:
            raise ValueError("alg/key mismatch")
        pub = ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), ec.SECP256R1()).public_key()
        pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                   signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg in ("PS256", "RS256"):
        if jwk.get("kty") != "RSA":
            raise ValueError("alg/key mismatch")
        rpub = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        if rpub.key_size < 2048:
            raise ValueError("small RSA key")
        pad: padding.AsymmetricPadding = (padding.PSS(padding.MGF1(hashes.SHA256()), 32) if alg == "PS256"
                                          else padding.PKCS1v15())
        rpub.verify(sig, signing_input, pad, hashes.SHA256())
    elif alg == "EdDSA":
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("alg/key mismatch")
        ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"])).verify(sig, signing_input)
    else:
        raise ValueError("alg not allowed")


_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")


def _norm_path(path: str) -> str:
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if (ch.isascii() and (ch.isalnum() or ch in "-._~")) else "%" + m.group(1).upper()
    path = _UNRESERVED.sub(fix, path or "/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if path.endswith(("/.", "/..")):
        out.append("")
    return "/".join(out) or "/"


def normalize_url(url: str) -> str:
    """RFC 3986 §6.2.2/§6.2.3 normalisation without query and fragment (R-03, docs/rules.md)."""
    s = urllib.parse.urlsplit(url)
    if s.scheme.lower() not in ("http", "https") or not s.netloc:
        raise ValueError("not absolute")
    scheme = s.scheme.lower()
    netloc = s.netloc.lower()
    default = ":443" if scheme == "https" else ":80"
    if netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return f"{scheme}://{netloc}{_norm_path(s.path)}"


@dataclass
class BrokenVerifier:
    issuer: str
    audience: str = "https://api.test"
    client_id: str = "conformance"
    client_secret: str = "conformance-secret"
    replay_check: bool = True
    htu_check: bool = True
    iat_past: int = 60
    iat_future: int = 15
    leeway: int = 60
    _keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    _last_refresh: float = 0.0
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _metadata: dict[str, Any] | None = None

    # ---- keys and tokens
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/oauth-authorization-server"
            self._metadata = requests.get(url, timeout=5).json()
        return self._metadata

    def key(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            if not self._keys or (kid not in self._keys and time.time() - self._last_refresh > 30):
                if self._keys:
                    self._last_refresh = time.time()
                jwks = requests.get(self.metadata()["jwks_uri"], timeout=5).json()
                self._keys = {k["kid"]: k for k in jwks["keys"]}
            return self._keys.get(kid)

    def token_claims(self, token: str, scheme: str) -> dict[str, Any]:
        bad = Deny(401, scheme, "invalid_token", "token_invalid")
        parts = token.split(".")
        if len(parts) == 1:
            return self.introspect(token, scheme)
        if len(parts) != 3:
            raise bad
        try:
            header, claims = json.loads(b64d(parts[0])), json.loads(b64d(parts[1]))
            sig = b64d(parts[2])
        except ValueError:
            raise bad from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise bad
        typ = str(header.get("typ", "")).lower().removeprefix("application/")
        if typ != "at+jwt" or header.get("alg") != "RS256":
            raise bad
        jwk = self.key(str(header.get("kid")))
        if jwk is None:
            raise bad
        try:
            verify_sig("RS256", jwk, f"{parts[0]}.{parts[1]}".encode(), sig)
        except (InvalidSignature, ValueError):
            raise bad from None
        now = time.time()
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if (claims.get("iss") != self.issuer or self.audience not in auds
                or not isinstance(claims.get("exp"), int) or claims["exp"] + self.leeway < now
                or claims.get("nbf", 0) > now + self.leeway
                or any(c not in claims for c in ("sub", "client_id", "iat", "jti"))):
            raise bad
        return claims

    def introspect(self, token: str, scheme: str) -> dict[str, Any]:
        resp = requests.post(self.metadata()["introspection_endpoint"], data={"token": token},
                             auth=(self.client_id, self.client_secret), timeout=5)
        if resp.status_code != 200:
            raise Deny(500, None, None, "introspection_unavailable")
        body = resp.json()
        if body.get("active") is not True or body.get("iss") != self.issuer:
            raise Deny(401, scheme, "invalid_token", "token_inactive")
        return body

    # ---- nonces (stateless HMAC of a 60 s step)
    def nonce(self, step: int | None = None) -> str:
        step = int(time.time() // 60) if step is None else step
        return b64e(hmac.new(self._secret, str(step).encode(), hashlib.sha256).digest())

    def nonce_ok(self, value: Any) -> bool:
        step = int(time.time() // 60)
        return isinstance(value, str) and any(hmac.compare_digest(value, self.nonce(s)) for s in (step, step - 1))

    # ---- DPoP (RFC 9449 §4.3)
    def check_proof(self, proof: str, *, htm: str, htu: str, token: str, jkt: str, nonce_route: bool) -> None:
        bad = Deny(401, "DPoP", "invalid_dpop_proof", "dpop_invalid")
        if "," in proof or " " in proof:
            raise bad
        parts = proof.split(".")
        if len(parts) != 3:
            raise bad
        try:
            header, claims = json.loads(b64d(parts[0])), json.loads(b64d(parts[1]))
            sig = b64d(parts[2])
        except ValueError:
            raise bad from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise bad
        typ = str(header.get("typ", "")).lower().removeprefix("application/")
        jwk = header.get("jwk")
        if typ != "dpop+jwt" or header.get("alg") not in ALGS or not isinstance(jwk, dict):
            raise bad
        if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
            raise bad
        try:
            verify_sig(header["alg"], jwk, f"{parts[0]}.{parts[1]}".encode(), sig)
        except (InvalidSignature, ValueError, KeyError, TypeError):
            raise bad from None
        jti, iat = claims.get("jti"), claims.get("iat")
        if not isinstance(jti, str) or not isinstance(claims.get("htm"), str) or not isinstance(claims.get("htu"), str):
            raise bad
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise bad
        now = time.time()
        if nonce_route and not self.nonce_ok(claims.get("nonce")):
            raise Deny(401, "DPoP", "use_dpop_nonce", "dpop_nonce_required", nonce=True)
        if not nonce_route and not (now - self.iat_past <= iat <= now + self.iat_future):
            raise bad
        if "exp" in claims and (not isinstance(claims["exp"], int) or claims["exp"] < now):
            raise bad
        if claims["htm"] != htm:
            raise bad
        if self.htu_check:
            try:
                if normalize_url(claims["htu"]) != normalize_url(htu):
                    raise bad
            except ValueError:
                raise bad from None
        if claims.get("ath") != b64e(hashlib.sha256(token.encode()).digest()):
            raise bad
        if thumb(jwk) != jkt:
            raise Deny(401, "DPoP", "invalid_token", "dpop_key_mismatch")
        if self.replay_check:
            with self._lock:
                if (jkt, jti) in self._seen:
                    raise bad
                self._seen.add((jkt, jti))

    # ---- certificates (escaped PEM, tolerant of the MTLS-RS-04 variants)
    @staticmethod
    def cert_thumb(value: str | None) -> str | None:
        if not value or value == "(null)":
            return None
        text = urllib.parse.unquote(value)
        body = re.sub(r"-----(BEGIN|END) CERTIFICATE-----", "", text)
        try:
            der = base64.b64decode(re.sub(r"\s+", "", body), validate=True)
            x509.load_der_x509_certificate(der)
        except (ValueError, binascii.Error):
            return None
        return b64e(hashlib.sha256(der).digest())

    # ---- the auth endpoint
    def decide(self, req: Request) -> dict[str, str]:
        h = req.headers
        method = h.get("X-Original-Method", req.method)
        uri = h.get("X-Original-URI", "/")
        proto, host, port = h.get("X-Forwarded-Proto", "http"), h.get("X-Forwarded-Host", ""), h.get("X-Forwarded-Port")
        path = uri.split("?", 1)[0]
        default = "443" if proto == "https" else "80"
        external = f"{proto}://{host}{'' if port in (None, default) else ':' + port}{path}"
        route = ROUTES.get(_norm_path(path))
        if route is None:
            raise Deny(403, None, None, "no_route")
        methods, scopes, nonce_route = route
        authz = h.get("Authorization")
        dpop = h.get("DPoP")
        if not authz:
            raise Deny(401, None, None, "no_credentials")
        fields = authz.split(",")
        if len(fields) > 1 and all(re.match(r"^\s*(bearer|dpop) ", f, re.I) for f in fields):
            # a WSGI server folds repeated fields with "," (R-12, docs/rules.md): two Authorization fields
            raise Deny(401, None, "invalid_request", "multiple_authorization", both=True)
        scheme_word, _, token = authz.partition(" ")
        scheme = {"bearer": "Bearer", "dpop": "DPoP"}.get(scheme_word.lower())
        if scheme is None:
            raise Deny(401, None, None, "unsupported_scheme")
        if not token or not TOKEN68.match(token):
            raise Deny(401, scheme, "invalid_request", "malformed_token")
        claims = self.token_claims(token, scheme)
        cnf = claims.get("cnf") or {}
        if not isinstance(cnf, dict) or (cnf and set(cnf) not in ({"jkt"}, {"x5t#S256"})):
            raise Deny(401, scheme, "invalid_token", "cnf_unsupported")
        if "jkt" in cnf:
            if scheme != "DPoP":
                raise Deny(401, "Bearer", "invalid_token", "bound_token_as_bearer")
            if dpop is None:
                raise Deny(401, "DPoP", "invalid_request", "dpop_missing")
            self.check_proof(dpop, htm=method, htu=external, token=token, jkt=cnf["jkt"], nonce_route=nonce_route)
        elif scheme == "DPoP":
            raise Deny(401, "DPoP", "invalid_token", "dpop_scheme_unbound_token")
        elif dpop is not None:
            raise Deny(401, "Bearer", "invalid_request", "dpop_with_bearer")
        if "x5t#S256" in cnf and self.cert_thumb(h.get("X-SSL-Client-Cert")) != cnf["x5t#S256"]:
            raise Deny(401, scheme, "invalid_token", "cert_mismatch")
        if methods is not None and method not in methods:
            raise Deny(403, None, None, "method_not_allowed")
        granted = set(str(claims.get("scope", "")).split())
        if not scopes <= granted:
            raise Deny(403, scheme, "insufficient_scope", "insufficient_scope", scope=" ".join(sorted(scopes)))
        return {"X-Auth-Subject": str(claims.get("sub")), "X-Auth-Binding": "dpop" if "jkt" in cnf else (
            "mtls" if cnf else "bearer")}

    def challenges(self, deny: Deny) -> list[str]:
        bearer, dpop = ['realm="broken"'], ['realm="broken"']
        for scheme, params in (("Bearer", bearer), ("DPoP", dpop)):
            if deny.error and (deny.both or deny.scheme == scheme):
                params.insert(0, f'error="{deny.error}"')
                if deny.scope:
                    params.append(f'scope="{deny.scope}"')
        dpop.append(f'algs="{" ".join(ALGS)}"')
        return ["Bearer " + ", ".join(bearer), "DPoP " + ", ".join(reversed(dpop))]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        req = Request(environ)
        try:
            resp = Response("", 200, headers=self.decide(req))
        except Deny as deny:
            resp = Response("", deny.status)
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["X-Auth-Error"] = deny.reason
            if deny.status in (401, 403):
                for value in self.challenges(deny):
                    resp.headers.add("WWW-Authenticate", value)
            if deny.nonce:
                resp.headers["DPoP-Nonce"] = self.nonce()
        return resp(environ, start_response)
