"""Spec §2: authorization-server cases, run against ``--as-metadata`` for the supplied clients.

Clients are given as ``--as-client ROLE:ID[:SECRET]``; a case needing a role that was not
supplied is skipped with the reason. Token-endpoint errors are judged on the JSON ``error``
member and status (RFC 6749 §5.2; RFC 9449 §5, §8), never on descriptions.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import secrets
import ssl
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .expect import ERROR_CHARS_RE, NONCE_RE
from .minting import REMOVE, Fixtures, b64u, b64u_decode, cert_pem, private_jwk, x5t_s256
from .model import Recorder, Registry, SkipCase

AS = Registry("AS")
case = AS.case

ROLES = ("confidential", "dpop-required", "public", "introspect", "tls", "self-signed-tls", "cert-bound")
TLS_ROLES = ("tls", "self-signed-tls", "cert-bound")
CertPair = tuple[str, str]


def parse_role_files(certs: list[str] | str | None, keys: list[str] | str | None) -> dict[str, CertPair]:
    """``--as-tls-cert [ROLE=]PEM`` / ``--as-tls-key [ROLE=]PEM`` → {role or "" (default): (cert, key)}."""
    def split(values: list[str] | str | None) -> dict[str, str]:
        out: dict[str, str] = {}
        for v in [values] if isinstance(values, str) else (values or []):
            role, sep, path = v.partition("=")
            if sep and role in TLS_ROLES:
                out[role] = path
            else:
                out[""] = v
        return out

    c, k = split(certs), split(keys)
    if set(c) != set(k):
        raise SystemExit("conformance: every --as-tls-cert [ROLE=]PEM needs a --as-tls-key for the same role")
    return {role: (c[role], k[role]) for role in c}


@dataclass
class AsClient:
    role: str
    client_id: str
    secret: str | None = None


def parse_as_client(spec: str) -> AsClient:
    """``ROLE:ID[:SECRET]`` (the secret may itself contain ':')."""
    role, _, rest = spec.partition(":")
    cid, _, secret = rest.partition(":")
    if role not in ROLES or not cid:
        raise SystemExit(f"conformance: --as-client {spec!r}: expected ROLE:ID[:SECRET], ROLE in {', '.join(ROLES)}")
    return AsClient(role, cid, secret or None)


@dataclass
class HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: Any = None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    def summary(self) -> str:
        parts = [str(self.status)]
        if self.error:
            parts.append(f"error={self.error}")
        if isinstance(self.body, dict) and "token_type" in self.body:
            parts.append(f"token_type={self.body['token_type']}")
        n = len(self.all("DPoP-Nonce"))
        if n:
            parts.append(f"DPoP-Nonce×{n}")
        return " ".join(parts)


@dataclass
class AsContext:
    """State for §2: metadata, clients, a current AS nonce, TLS material."""

    fx: Fixtures
    metadata_url: str
    clients: dict[str, AsClient]
    redirect_uri: str | None = None
    scope: str | None = None
    certs: dict[str, CertPair] = field(default_factory=dict)
    nonce_mode: bool = False
    timeout: float = 10.0
    ca: str | None = None
    insecure: bool = False
    _metadata: dict[str, Any] | None = None
    nonce: str | None = None
    _jwks: KeySet | None = field(default=None)
    _own: tempfile.TemporaryDirectory[str] | None = field(default=None)

    @classmethod
    def from_args(cls, args: argparse.Namespace, fx: Fixtures) -> AsContext:
        clients = {c.role: c for c in map(parse_as_client, args.as_client)}
        return cls(fx, args.as_metadata, clients, args.as_redirect_uri, getattr(args, "as_scope", None),
                   parse_role_files(args.as_tls_cert, args.as_tls_key), args.as_nonce, args.timeout,
                   args.ca, args.insecure)

    # ---- client certificates
    def cert_for(self, role: str | None) -> CertPair | None:
        """The certificate registered for ``role`` (``--as-tls-cert ROLE=PEM``), else the default one."""
        return self.certs.get(role or "tls") or self.certs.get("")

    def own_cert(self) -> CertPair:
        """The suite's own self-signed CERT1, registered nowhere (MTLS-AS-02c, MTLS-AS-03b)."""
        if self._own is None:
            self._own = tempfile.TemporaryDirectory(prefix="tg-conformance-as-")
            cpath = os.path.join(self._own.name, "cert1.pem")
            kpath = os.path.join(self._own.name, "cert1.key")
            with open(cpath, "w", encoding="ascii") as fh:
                fh.write(cert_pem(self.fx.cert1))
            with open(kpath, "wb") as fh:
                fh.write(self.fx.c1.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return (os.path.join(self._own.name, "cert1.pem"), os.path.join(self._own.name, "cert1.key"))

    # ---- HTTP
    def _ssl(self, cert: CertPair | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if cert is not None:
            ctx.load_cert_chain(*cert)
        return ctx

    def http(self, method: str, url: str, *, headers: list[tuple[str, str]] | None = None,
             form: dict[str, str] | None = None, cert: CertPair | None = None) -> HttpResult:
        u = urllib.parse.urlsplit(url)
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname or "", u.port or 443, timeout=self.timeout,
                                               context=self._ssl(cert))
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port or 80, timeout=self.timeout)
        body = urllib.parse.urlencode(form).encode("ascii") if form is not None else None
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            hdrs = list(headers or [])
            if body is not None:
                hdrs += [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body)))]
            for k, v in hdrs:
                conn.putheader(k, v)
            conn.endheaders(body)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed: Any = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return HttpResult(resp.status, list(resp.getheaders()), parsed)
        finally:
            conn.close()

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            res = self.http("GET", self.metadata_url)
            if res.status != 200 or not isinstance(res.body, dict):
                raise SkipCase(f"AS metadata not available ({res.status})")
            self._metadata = res.body
        return self._metadata

    def endpoint(self, name: str, mtls: bool = False) -> str:
        md = self.metadata
        if mtls:
            alias = (md.get("mtls_endpoint_aliases") or {}).get(name)
            if alias:
                return str(alias)
        if not md.get(name):
            raise SkipCase(f"AS metadata has no {name}")
        return str(md[name])

    def client(self, role: str) -> AsClient:
        c = self.clients.get(role)
        if c is None:
            raise SkipCase(f"needs an --as-client {role}:ID[:SECRET]")
        return c

    @staticmethod
    def basic(c: AsClient, secret: str | None = None) -> tuple[str, str]:
        """RFC 6749 §2.3.1 client_secret_basic (form-urlencoded id and secret)."""
        raw = f"{urllib.parse.quote_plus(c.client_id)}:{urllib.parse.quote_plus(secret or c.secret or '')}"
        return ("Authorization", "Basic " + base64.b64encode(raw.encode()).decode("ascii"))

    # ---- proofs at the token endpoint (spec §2 P_AS())
    def proof(self, url: str | None = None, *, key: str = "K1", htm: str = "POST", nonce: bool = True,
              **kw: Any) -> str:
        claims = dict(kw.pop("claims", {}) or {})
        if nonce and self.nonce and "nonce" not in claims:
            claims["nonce"] = self.nonce
        htu = kw.pop("htu", None) or url or self.endpoint("token_endpoint")
        return self.fx.proof(htm=htm, htu=htu, key=key, claims=claims, **kw)

    def token(self, form: dict[str, str], *, client: AsClient | None, proofs: list[str] | None = None,
              url: str | None = None, tls_cert: bool | CertPair = False, retry_nonce: bool = True,
              proof_kw: dict[str, Any] | None = None) -> HttpResult:
        """POST to the token endpoint; ``proofs=None`` mints one default proof (K1) per attempt.

        ``tls_cert=True`` presents the certificate registered for the client's role (via the mTLS
        alias when the AS advertises one); a (cert, key) pair presents that certificate instead.
        """
        cert = self.cert_for(client.role if client else None) if tls_cert is True else (tls_cert or None)
        url = url or self.endpoint("token_endpoint", mtls=bool(tls_cert))
        for _ in range(2 if retry_nonce else 1):
            hdrs: list[tuple[str, str]] = []
            if client is not None and client.secret:
                hdrs.append(self.basic(client))
            elif client is not None:
                form = {**form, "client_id": client.client_id}
            for p in (proofs if proofs is not None else [self.proof(url, **(proof_kw or {}))]):
                hdrs.append(("DPoP", p))
            res = self.http("POST", url, headers=hdrs, form=form, cert=cert)
            nonces = res.all("DPoP-Nonce")
            if nonces:
                self.nonce = nonces[-1]
            if not (retry_nonce and res.error == "use_dpop_nonce" and proofs is None):
                return res
        return res

    def fetch_nonce(self) -> str | None:
        """An AS-issued nonce (spec NONCE-RS-04); None if the AS issues none."""
        try:
            c = self.clients.get("confidential") or self.clients.get("dpop-required")
            if c is None:
                return None
            res = self.token({"grant_type": "client_credentials"}, client=c,
                             proofs=[self.fx.proof(htm="POST", htu=self.endpoint("token_endpoint"))],
                             retry_nonce=False)
            values = res.all("DPoP-Nonce")
            return values[-1] if values else self.nonce
        except (SkipCase, OSError):
            return None

    def authorize(self, c: AsClient, verifier: str, **extra: str) -> str:
        """RFC 6749 §4.1 + RFC 7636: get a code from an auto-consenting authorization endpoint."""
        params = {"response_type": "code", "client_id": c.client_id, "state": secrets.token_urlsafe(8),
                  "code_challenge": b64u(hashlib.sha256(verifier.encode()).digest()),
                  "code_challenge_method": "S256"}
        if self.redirect_uri:
            params["redirect_uri"] = self.redirect_uri
        if self.scope:
            params["scope"] = self.scope
        params.update(extra)
        if "request_uri" in extra:  # RFC 9126 §4: the pushed request carries everything else
            params = {"client_id": c.client_id, "request_uri": extra["request_uri"]}
        url = self.endpoint("authorization_endpoint")
        res = self.http("GET", url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params))
        loc = next(iter(res.all("Location")), "")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(loc).query))
        if res.status not in (302, 303) or "code" not in query:
            raise SkipCase(f"authorization endpoint did not auto-consent ({res.status}, "
                           f"error={query.get('error', '-')})")
        return query["code"]

    def code_grant(self, c: AsClient, verifier: str, code: str) -> dict[str, str]:
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        if self.redirect_uri:
            form["redirect_uri"] = self.redirect_uri
        return form

    def cc_form(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return form

    def jwks(self) -> KeySet:
        if self._jwks is None:
            res = self.http("GET", self.endpoint("jwks_uri"))
            self._jwks = KeySet.import_key_set(res.body)
        return self._jwks


def claims_of(token: str) -> dict[str, Any] | None:
    """The payload of a JWT access token (None for opaque tokens)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        body = json.loads(b64u_decode(parts[1]))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def header_of(token: str) -> dict[str, Any]:
    try:
        return dict(json.loads(b64u_decode(token.split(".")[0])))
    except (ValueError, TypeError):
        return {}


def _rec(rec: Recorder, sub: str, expected: str, res: HttpResult, problem: str | None,
         level: str | None = None) -> None:
    rec.record(sub, expected, res.summary(), problem, level)


def _expect_error(res: HttpResult, status: set[int], errors: set[str]) -> str | None:
    if res.status not in status:
        return f"status {res.status}, expected {'/'.join(map(str, sorted(status)))}"
    if res.error not in errors:
        return f"error={res.error}, expected {'|'.join(sorted(errors))}"
    if isinstance(res.body, dict) and "access_token" in res.body:
        return "a token was issued"
    return None


def _expect_token(res: HttpResult, token_type: str, jkt: str | None = None,
                  x5t: str | None = None) -> str | None:
    """RFC 9449 §5 / RFC 8705 §3: 200, token_type, binding in the AT, Cache-Control no-store."""
    if res.status != 200 or not isinstance(res.body, dict) or "access_token" not in res.body:
        return f"status {res.status}, error={res.error}: no token"
    if str(res.body.get("token_type", "")).lower() != token_type.lower():
        return f"token_type={res.body.get('token_type')}, expected {token_type}"
    cc = {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}
    if "no-store" not in cc:
        return "no Cache-Control: no-store"
    claims = claims_of(res.body["access_token"])
    if claims is not None:
        cnf = claims.get("cnf") or {}
        if jkt is not None and cnf.get("jkt") != jkt:
            return "AT cnf.jkt is not thumb(proof key)"
        if x5t is not None and cnf.get("x5t#S256") != x5t:
            return "AT cnf.x5t#S256 is not the certificate's"
        if jkt is None and x5t is None and cnf:
            return "AT carries cnf although unbound"
    return None


# =========================================================================== 2.1 META


@case("META-AS-01", "8414 §2, §3", "M", "metadata document")
def meta_as_01(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.http("GET", ctx.metadata_url)
    ctype = next(iter(res.all("Content-Type")), "")
    md = res.body if isinstance(res.body, dict) else {}
    problem = None
    if res.status != 200 or "application/json" not in ctype.lower():
        problem = f"status {res.status}, content-type {ctype or '-'}"
    else:
        for member in ("issuer", "token_endpoint", "jwks_uri", "response_types_supported",
                       "grant_types_supported", "token_endpoint_auth_methods_supported",
                       "introspection_endpoint", "introspection_endpoint_auth_methods_supported"):
            if member not in md:
                problem = f"missing {member}"
                break
        methods = set(md.get("token_endpoint_auth_methods_supported") or [])
        if problem is None and not {"tls_client_auth", "self_signed_tls_client_auth"} <= methods:
            problem = "token_endpoint_auth_methods_supported lacks the RFC 8705 methods"
        if problem is None and md.get("code_challenge_methods_supported") != ["S256"]:
            problem = "code_challenge_methods_supported is not [\"S256\"]"
        aliases = md.get("mtls_endpoint_aliases")
        https_only = isinstance(aliases, dict) and all(
            isinstance(v, str) and v.startswith("https://") for v in aliases.values())
        if problem is None and aliases is not None and not https_only:
            problem = "mtls_endpoint_aliases is not an object of https URLs"
    rec.record("", "200 JSON with the RFC 8414 members", f"{res.status} {len(md)} members", problem)


@case("META-AS-02", "9449 §5.1", "M", "dpop_signing_alg_values_supported")
def meta_as_02(ctx: AsContext, rec: Recorder) -> None:
    algs = ctx.metadata.get("dpop_signing_alg_values_supported")
    problem = None
    if not isinstance(algs, list) or not algs:
        problem = "absent or not a non-empty array"
    elif any(not isinstance(a, str) or a == "none" or a.startswith("HS") for a in algs):
        problem = "lists none or a MAC alg"
    rec.record("", "non-empty array of asymmetric algs", f"{algs}", problem)


@case("META-AS-03", "8705 §3.3", "M", "tls_client_certificate_bound_access_tokens")
def meta_as_03(ctx: AsContext, rec: Recorder) -> None:
    value = ctx.metadata.get("tls_client_certificate_bound_access_tokens")
    rec.record("", "JSON true", json.dumps(value), None if value is True else "not the JSON boolean true")


@case("META-AS-04", "8414 §3, §3.3; 9068 §4", "M", "issuer identifier")
def meta_as_04(ctx: AsContext, rec: Recorder) -> None:
    u = urllib.parse.urlsplit(ctx.metadata_url)
    wk = "/.well-known/oauth-authorization-server"
    if not u.path.startswith(wk):
        rec.skip("a", "metadata URL is not an RFC 8414 well-known URL")
        rec.skip("b", "metadata URL is not an RFC 8414 well-known URL")
    else:
        expected = urllib.parse.urlunsplit((u.scheme, u.netloc, u.path[len(wk):], "", ""))
        got = ctx.metadata.get("issuer")
        sub = "b" if u.path[len(wk):] else "a"
        rec.record(sub, f"issuer == {expected}", str(got), None if got == expected else "issuer differs")
        rec.skip("a" if sub == "b" else "b", "issuer has no path" if sub == "a" else "issuer has a path")
    c = ctx.clients.get("confidential")
    if c is None:
        rec.skip("c", "needs an --as-client confidential:ID:SECRET")
        return
    res = ctx.token(ctx.cc_form(), client=c, proofs=[])
    claims = claims_of(res.body.get("access_token", "")) if isinstance(res.body, dict) else None
    if claims is None:
        rec.skip("c", "no JWT access token to inspect")
        return
    ok = claims.get("iss") == ctx.metadata.get("issuer")
    rec.record("c", "AT iss == metadata issuer", res.summary(), None if ok else "AT iss differs from issuer")


# =========================================================================== 2.2 TOK


@case("TOK-AS-01", "9449 §5, §6.1", "M", "DPoP-bound token")
def tok_as_01(ctx: AsContext, rec: Recorder) -> None:
    jkt = ctx.fx.jkt("K1")
    if "public" in ctx.clients:
        c = ctx.clients["public"]
        verifier = secrets.token_urlsafe(48)
        code = ctx.authorize(c, verifier)
        res = ctx.token(ctx.code_grant(c, verifier, code), client=c)
        _rec(rec, "a", "200 DPoP, cnf.jkt=thumb(K1), no-store", res, _expect_token(res, "DPoP", jkt=jkt))
    else:
        rec.skip("a", "needs an --as-client public:ID")
    c = ctx.clients.get("confidential") or ctx.clients.get("dpop-required")
    if c is None:
        rec.skip("b", "needs an --as-client confidential:ID:SECRET")
        return
    res = ctx.token(ctx.cc_form(), client=c)
    _rec(rec, "b", "200 DPoP, cnf.jkt=thumb(K1), no-store", res, _expect_token(res, "DPoP", jkt=jkt))


@case("TOK-AS-02", "9449 §5", "M", "no DPoP header: Bearer token")
def tok_as_02(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("confidential"), proofs=[])
    _rec(rec, "", "200 Bearer, no cnf", res, _expect_token(res, "Bearer"))


@case("TOK-AS-03", "9449 §5.2", "M", "DPoP-required client without a proof")
def tok_as_03(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("dpop-required"), proofs=[])
    _rec(rec, "", "400 invalid_request", res, _expect_error(res, {400}, {"invalid_request"}))


def _bad_proofs(ctx: AsContext) -> list[tuple[str, str]]:
    url = ctx.endpoint("token_endpoint")
    good = ctx.proof(url)
    head, _, sig = good.rpartition(".")
    raw = bytearray(b64u_decode(sig))
    raw[3] ^= 1
    secret = b"conformance-hmac-secret-0123456789"
    return [
        ("a", f"{head}.{b64u(bytes(raw))}"),
        ("b", ctx.proof(url, alg="none")),
        ("c", ctx.proof(url, alg="HS256", jwk={"kty": "oct", "k": b64u(secret)}, sign_key=secret)),
        ("d", ctx.proof(url, header={"typ": "JWT"})),
        ("e", ctx.proof(url, jwk=private_jwk(ctx.fx.k1))),
        ("f", ctx.proof(url, htm="GET")),
        ("g", ctx.proof(htu=urllib.parse.urljoin(url, "/other"))),
        # With AS nonces on, a valid nonce may stand in for iat freshness (RFC 9449 §4.3(11)), so
        # the stale-iat proofs carry none there (and may then be answered with use_dpop_nonce).
        ("h1", ctx.proof(url, iat_offset=-3600, nonce=not ctx.nonce_mode)),
        ("h2", ctx.proof(url, iat_offset=3600, nonce=not ctx.nonce_mode)),
        ("i", ctx.proof(url, claims={"jti": REMOVE})),
    ]


@case("TOK-AS-04", "9449 §4.3, §5", "M", "invalid proofs at the token endpoint")
def tok_as_04(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    for sub, proof in _bad_proofs(ctx):
        res = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
        errors = {"invalid_dpop_proof"}
        if ctx.nonce_mode and sub in ("h1", "h2"):
            errors.add("use_dpop_nonce")
        _rec(rec, sub, f"400 {' | '.join(sorted(errors))}", res, _expect_error(res, {400}, errors))


@case("TOK-AS-05", "9449 §4.3(1)", "M", "two DPoP header fields")
def tok_as_05(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(), ctx.proof()], retry_nonce=False)
    _rec(rec, "", "400 invalid_dpop_proof", res, _expect_error(res, {400}, {"invalid_dpop_proof"}))


@case("TOK-AS-06", "9449 §11.1", "S", "replayed proof")
def tok_as_06(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    ctx.fetch_nonce()
    proof = ctx.proof()
    first = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
    if first.status != 200:
        _rec(rec, "", "first 200, then 400 invalid_dpop_proof", first, "first use was not accepted")
        return
    res = ctx.token(ctx.cc_form(), client=c, proofs=[proof], retry_nonce=False)
    _rec(rec, "", "400 invalid_dpop_proof on the 2nd use", res, _expect_error(res, {400}, {"invalid_dpop_proof"}))


@case("TOK-AS-07", "FAPI2 5.3.2.1", "S", "clock skew and nbf/exp accepted")
def tok_as_07(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    t0 = ctx.fx.token_claims()["iat"]
    for sub, kw in (("a", {"iat_offset": -10}), ("b", {"iat_offset": 8}),
                    ("c", {"claims": {"nbf": t0, "exp": t0 + 300}})):
        res = ctx.token(ctx.cc_form(), client=c, proof_kw=kw)
        _rec(rec, sub, "200 DPoP", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("TOK-AS-08", "9449 §4.3(9); 8705 §5", "M", "htu names the mTLS alias actually called")
def tok_as_08(ctx: AsContext, rec: Recorder) -> None:
    alias = (ctx.metadata.get("mtls_endpoint_aliases") or {}).get("token_endpoint")
    if not alias:
        raise SkipCase("AS metadata has no mtls_endpoint_aliases.token_endpoint")
    # A secret-authenticated client reaches the alias too (RFC 8705 §5); a tls client would usually
    # be certificate-bound, and certificate binding plus DPoP is refused (MTLS-AS-06).
    c = ctx.clients.get("confidential") or ctx.clients.get("dpop-required")
    if c is None:
        raise SkipCase("needs an --as-client confidential:ID:SECRET")
    res = ctx.token(ctx.cc_form(), client=c, url=alias, proof_kw={"htu": alias})
    _rec(rec, "a", "200 DPoP", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))
    res = ctx.token(ctx.cc_form(), client=c, url=alias, proof_kw={"htu": ctx.endpoint("token_endpoint")})
    _rec(rec, "b", "400 invalid_dpop_proof", res, _expect_error(res, {400}, {"invalid_dpop_proof"}))


@case("TOK-AS-09", "9449 §4.2", "P", "ath at the token endpoint is ignored")
def tok_as_09(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    res = ctx.token(ctx.cc_form(), client=c, proof_kw={"claims": {"ath": b64u(b"\x00" * 32)}})
    _rec(rec, "", "200 DPoP", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


# =========================================================================== 2.3 NONCE


def _nonce_problem(res: HttpResult) -> str | None:
    problem = _expect_error(res, {400}, {"use_dpop_nonce"})
    if problem:
        return problem
    values = res.all("DPoP-Nonce")
    if len(values) != 1 or not NONCE_RE.match(values[0]):
        return f"{len(values)} valid DPoP-Nonce headers, expected 1"
    cc = {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}
    return None if "no-store" in cc else "no Cache-Control: no-store"


def _need_nonce(ctx: AsContext) -> AsClient:
    if not ctx.nonce_mode:
        raise SkipCase("AS nonce mode not declared (--as-nonce)")
    return ctx.clients.get("confidential") or ctx.client("dpop-required")


@case("NONCE-AS-01", "9449 §8 Fig 20", "M", "nonce required at the token endpoint")
def nonce_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(nonce=False)], retry_nonce=False)
    _rec(rec, "", "400 use_dpop_nonce + one DPoP-Nonce, no-store", res, _nonce_problem(res))


@case("NONCE-AS-02", "9449 §8, §8.2", "M", "retry with the nonce")
def nonce_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    first = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(nonce=False)], retry_nonce=False)
    nonce = next(iter(first.all("DPoP-Nonce")), None)
    if nonce is None:
        raise SkipCase("no nonce was issued")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(claims={"nonce": nonce})], retry_nonce=False)
    _rec(rec, "", "200 DPoP", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("NONCE-AS-03", "9449 §8", "M", "made-up nonce")
def nonce_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = _need_nonce(ctx)
    res = ctx.token(ctx.cc_form(), client=c, proofs=[ctx.proof(claims={"nonce": "made-up-nonce"})],
                    retry_nonce=False)
    _rec(rec, "", "400 use_dpop_nonce + new DPoP-Nonce", res, _nonce_problem(res))


# =========================================================================== 2.4 JKT


@case("JKT-AS-01", "9449 §10", "M", "dpop_jkt then the same key")
def jkt_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c)
    _rec(rec, "", "200 DPoP, cnf.jkt=thumb(K1)", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("JKT-AS-02", "9449 §10", "M", "dpop_jkt then another key")
def jkt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c, proof_kw={"key": "K2"})
    _rec(rec, "", "400 invalid_grant", res, _expect_error(res, {400}, {"invalid_grant"}))


@case("JKT-AS-03", "9449 §10", "M", "dpop_jkt then no proof")
def jkt_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v, dpop_jkt=ctx.fx.jkt("K1"))
    res = ctx.token(ctx.code_grant(c, v, code), client=c, proofs=[])
    _rec(rec, "", "400 invalid_grant", res, _expect_error(res, {400}, {"invalid_grant"}))


def _par(ctx: AsContext, c: AsClient, verifier: str, proof_key: str = "K1", **extra: str) -> HttpResult:
    """RFC 9126 pushed authorization request with a DPoP header (RFC 9449 §10.1); nonce retry once."""
    url = ctx.endpoint("pushed_authorization_request_endpoint")
    form = {"response_type": "code", "client_id": c.client_id,
            "code_challenge": b64u(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256"}
    if ctx.redirect_uri:
        form["redirect_uri"] = ctx.redirect_uri
    if ctx.scope:
        form["scope"] = ctx.scope
    form.update(extra)
    hdrs = [ctx.basic(c)] if c.secret else []
    res = ctx.http("POST", url, headers=[*hdrs, ("DPoP", ctx.proof(url, key=proof_key))], form=form)
    if res.error == "use_dpop_nonce" and res.all("DPoP-Nonce"):
        nonce = res.all("DPoP-Nonce")[-1]
        res = ctx.http("POST", url, form=form, headers=[
            *hdrs, ("DPoP", ctx.proof(url, key=proof_key, claims={"nonce": nonce}))])
    return res


@case("JKT-AS-04", "9449 §10.1", "M", "PAR with DPoP")
def jkt_as_04(ctx: AsContext, rec: Recorder) -> None:
    if not ctx.metadata.get("pushed_authorization_request_endpoint"):
        raise SkipCase("the AS does not implement PAR")
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    pushed = _par(ctx, c, v)
    request_uri = pushed.body.get("request_uri") if isinstance(pushed.body, dict) else None
    if pushed.status not in (200, 201) or not request_uri:
        rec.record("a", "PAR 201 with request_uri", pushed.summary(), "the pushed request was refused")
    else:
        code = ctx.authorize(c, v, request_uri=request_uri)
        res = ctx.token(ctx.code_grant(c, v, code), client=c, proof_kw={"key": "K2"})
        _rec(rec, "a", "400 invalid_grant", res, _expect_error(res, {400}, {"invalid_grant"}))
    res = _par(ctx, c, secrets.token_urlsafe(48), dpop_jkt=ctx.fx.jkt("K2"))
    _rec(rec, "b", "PAR 400 invalid_request | invalid_dpop_proof", res,
         _expect_error(res, {400}, {"invalid_request", "invalid_dpop_proof"}))


# =========================================================================== 2.5 RT


def _public_tokens(ctx: AsContext) -> tuple[AsClient, dict[str, Any]]:
    c = ctx.client("public")
    v = secrets.token_urlsafe(48)
    code = ctx.authorize(c, v)
    res = ctx.token(ctx.code_grant(c, v, code), client=c)
    if res.status != 200 or not isinstance(res.body, dict) or "refresh_token" not in res.body:
        raise SkipCase(f"no refresh token for the public client ({res.summary()}; try --as-scope)")
    return c, res.body


@case("RT-AS-01", "9449 §5", "M", "public-client refresh with the bound key")
def rt_as_01(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c)
    _rec(rec, "", "200 DPoP, cnf.jkt=thumb(K1)", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K1")))


@case("RT-AS-02", "9449 §5", "M", "public-client refresh with another key")
def rt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c,
                    proof_kw={"key": "K2"})
    _rec(rec, "", "400 invalid_grant", res, _expect_error(res, {400}, {"invalid_grant"}))


@case("RT-AS-03", "9449 §5", "M", "public-client refresh without a proof")
def rt_as_03(ctx: AsContext, rec: Recorder) -> None:
    c, body = _public_tokens(ctx)
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, client=c, proofs=[])
    _rec(rec, "", "400 invalid_grant", res, _expect_error(res, {400}, {"invalid_grant"}))


@case("RT-AS-04", "9449 §5", "M", "confidential-client refresh tokens are not key-bound")
def rt_as_04(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    first = ctx.token(ctx.cc_form(), client=c)
    rt = first.body.get("refresh_token") if isinstance(first.body, dict) else None
    if not rt and "authorization_code" in (ctx.metadata.get("grant_types_supported") or []):
        v = secrets.token_urlsafe(48)
        first = ctx.token(ctx.code_grant(c, v, ctx.authorize(c, v)), client=c)
        rt = first.body.get("refresh_token") if isinstance(first.body, dict) else None
    if not rt:
        raise SkipCase("the AS issued the confidential client no refresh token "
                       "(client_credentials, authorization_code)")
    res = ctx.token({"grant_type": "refresh_token", "refresh_token": rt}, client=c, proof_kw={"key": "K2"})
    _rec(rec, "", "200 DPoP bound to K2", res, _expect_token(res, "DPoP", jkt=ctx.fx.jkt("K2")))


# =========================================================================== 2.6 INT


def _introspector(ctx: AsContext) -> AsClient:
    c = ctx.clients.get("introspect") or ctx.clients.get("confidential")
    if c is None or not c.secret:
        raise SkipCase("needs an --as-client introspect:ID:SECRET (or confidential)")
    return c


def _introspect(ctx: AsContext, token: str, client: AsClient | None, form: dict[str, str] | None = None) -> HttpResult:
    hdrs = [ctx.basic(client)] if client else []
    return ctx.http("POST", ctx.endpoint("introspection_endpoint"), headers=hdrs,
                    form={"token": token} if form is None else form)


@case("INT-AS-01", "9449 §6.2", "M", "introspecting a DPoP token")
def int_as_01(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    tok = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        raise SkipCase(f"could not get a DPoP token ({tok.summary()})")
    res = _introspect(ctx, at, rs)
    b = res.body if isinstance(res.body, dict) else {}
    problem = None
    if res.status != 200 or b.get("active") is not True:
        problem = f"status {res.status}, active={b.get('active')}"
    elif (b.get("cnf") or {}).get("jkt") != ctx.fx.jkt("K1"):
        problem = "top-level cnf.jkt missing or wrong"
    elif "token_type" in b and b["token_type"] != "DPoP":
        problem = f"token_type={b['token_type']}"
    rec.record("", "200 active, cnf.jkt, token_type DPoP", f"{res.status}", problem)


@case("INT-AS-02", "8705 §3.2", "M", "introspecting an mTLS-bound token")
def int_as_02(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    c = ctx.clients.get("cert-bound") or ctx.clients.get("tls")
    if c is None or not ctx.cert_for(c.role):
        raise SkipCase("needs an --as-client cert-bound:ID and --as-tls-cert/--as-tls-key")
    tok = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        raise SkipCase(f"could not get a certificate-bound token ({tok.summary()})")
    res = _introspect(ctx, at, rs)
    b = res.body if isinstance(res.body, dict) else {}
    want = (claims_of(at) or {}).get("cnf", {}).get("x5t#S256")
    got = (b.get("cnf") or {}).get("x5t#S256")
    problem = None if res.status == 200 and got and (want is None or got == want) else "cnf.x5t#S256 missing or differs"
    rec.record("", "200 cnf.x5t#S256 equal to the AT's", f"{res.status}", problem)


@case("INT-AS-03", "7662 §2.2, §2.3", "M", "inactive tokens")
def int_as_03(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    res = _introspect(ctx, "unknown-" + secrets.token_urlsafe(16), rs)
    ok = res.status == 200 and res.body == {"active": False}
    problem = None if ok else "body is not exactly {active:false}"
    rec.record("", '200 exactly {"active":false}', f"{res.status}", problem)


@case("INT-AS-04", "7662 §2.1, §2.3; 9449 §6.2", "M", "introspection request errors")
def int_as_04(ctx: AsContext, rec: Recorder) -> None:
    rs = _introspector(ctx)
    res = _introspect(ctx, "x", None)
    _rec(rec, "a", "401 invalid_client", res, _expect_error(res, {401}, {"invalid_client"}))
    res = _introspect(ctx, "x", rs, form={})
    _rec(rec, "b", "400 invalid_request", res, _expect_error(res, {400}, {"invalid_request"}))
    tok = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = tok.body.get("access_token") if isinstance(tok.body, dict) else None
    if not at:
        rec.skip("c", "could not get a DPoP token")
        return
    res = _introspect(ctx, at, rs)
    active = isinstance(res.body, dict) and res.body.get("active") is True
    rec.record("c", "200 active without a DPoP header", res.summary(), None if active else "not active")


# =========================================================================== 2.7 MTLS


def _tls_client(ctx: AsContext, role: str) -> AsClient:
    c = ctx.client(role)
    if not ctx.cert_for(role):
        raise SkipCase(f"needs --as-tls-cert/--as-tls-key [{role}=]PEM (the certificate registered for the client)")
    return c


def _cert_thumb(path: str) -> str:
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return x5t_s256(cert.public_bytes(Encoding.DER))


@case("MTLS-AS-01", "8705 §2.1", "M", "tls_client_auth")
def mtls_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=True)
    _rec(rec, "", "200", res, None if res.status == 200 else f"status {res.status}, error={res.error}")


@case("MTLS-AS-02", "8705 §2", "M", "no or wrong certificate")
def mtls_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=False,
                    url=ctx.endpoint("token_endpoint", mtls=True))
    _rec(rec, "a", "401 invalid_client", res, _expect_error(res, {401}, {"invalid_client"}))
    rec.skip("b", "needs a second certificate from a trusted CA with another subject")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=ctx.own_cert())
    _rec(rec, "c", "401 invalid_client", res, _expect_error(res, {401}, {"invalid_client"}))
    other = ctx.clients.get("self-signed-tls")
    if other is None:
        rec.skip("d", "needs a second tls client (self-signed-tls:ID)")
        return
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", other.client_id), proofs=[], tls_cert=True)
    _rec(rec, "d", "401 invalid_client", res, _expect_error(res, {401}, {"invalid_client"}))


@case("MTLS-AS-03", "8705 §2.2", "M", "self_signed_tls_client_auth")
def mtls_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "self-signed-tls")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    _rec(rec, "a", "200", res, None if res.status == 200 else f"status {res.status}, error={res.error}")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=ctx.own_cert())
    _rec(rec, "b", "401 invalid_client", res, _expect_error(res, {401}, {"invalid_client"}))


@case("MTLS-AS-04", "8705 §2", "M", "client_id is required with mTLS")
def mtls_as_04(ctx: AsContext, rec: Recorder) -> None:
    _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=None, proofs=[], tls_cert=True)
    _rec(rec, "", "400 invalid_request", res, _expect_error(res, {400}, {"invalid_request"}))


@case("MTLS-AS-05", "8705 §3, §3.1", "M", "certificate-bound access tokens")
def mtls_as_05(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "cert-bound")
    cert = ctx.cert_for("cert-bound")
    assert cert is not None
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    _rec(rec, "a", "200 Bearer, cnf.x5t#S256", res, _expect_token(res, "Bearer", x5t=_cert_thumb(cert[0])))
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=False,
                    url=ctx.endpoint("token_endpoint", mtls=True))
    _rec(rec, "b", "400 invalid_grant (or invalid_client)", res,
         _expect_error(res, {400, 401}, {"invalid_grant", "invalid_client"}))


@case("MTLS-AS-06", "node multiple PoP mechanisms", "P", "certificate binding plus DPoP")
def mtls_as_06(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "cert-bound")
    res = ctx.token(ctx.cc_form(), client=c, tls_cert=True)
    _rec(rec, "", "400 invalid_request", res, _expect_error(res, {400}, {"invalid_request"}))


# =========================================================================== 2.8 FMT


@case("FMT-AS-01", "9068 §2.1, §2.2, §4", "M", "issued access-token format")
def fmt_as_01(ctx: AsContext, rec: Recorder) -> None:
    res = ctx.token(ctx.cc_form(), client=ctx.client("confidential"))
    at = res.body.get("access_token") if isinstance(res.body, dict) else None
    if not at:
        raise SkipCase(f"no token issued ({res.summary()})")
    claims = claims_of(at)
    if claims is None:
        raise SkipCase("the client's access tokens are opaque")
    hdr = header_of(at)
    problem = None
    if str(hdr.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        problem = f"typ={hdr.get('typ')}"
    elif str(hdr.get("alg", "none")) == "none" or str(hdr.get("alg")).startswith("HS"):
        problem = f"alg={hdr.get('alg')}"
    else:
        missing = [c for c in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti") if c not in claims]
        if missing:
            problem = f"missing claims {missing}"
        else:
            try:
                jws.deserialize_compact(at, ctx.jwks(), algorithms=[str(hdr["alg"])])
            except (JoseError, ValueError, KeyError) as exc:
                problem = f"signature does not verify with jwks_uri ({type(exc).__name__})"
    rec.record("", "at+jwt, asymmetric alg, kid in jwks_uri, RFC 9068 claims",
               f"typ={hdr.get('typ')} alg={hdr.get('alg')}", problem)


@case("FMT-AS-02", "RFC 6749 §5.2", "M", "error responses")
def fmt_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = ctx.client("confidential")
    hdrs = [ctx.basic(c, secret="wrong-secret")]
    res = ctx.http("POST", ctx.endpoint("token_endpoint"), headers=hdrs, form=ctx.cc_form())
    problem = _expect_error(res, {401}, {"invalid_client"})
    if problem is None and not any(v.lower().startswith("basic") for v in res.all("WWW-Authenticate")):
        problem = "no WWW-Authenticate: Basic"
    _rec(rec, "a", "401 invalid_client + WWW-Authenticate Basic", res, problem)
    problem = None
    body = res.body if isinstance(res.body, dict) else None
    cc = {d.strip().lower() for v in res.all("Cache-Control") for d in v.split(",")}
    if body is None:
        problem = "error body is not JSON"
    elif "no-store" not in cc:
        problem = "no Cache-Control: no-store"
    elif any(not ERROR_CHARS_RE.match(str(body.get(k, ""))) for k in ("error", "error_description")):
        problem = "error/error_description outside %x20-21 / %x23-5B / %x5D-7E"
    _rec(rec, "b", "JSON error, no-store, RFC 6749 charset", res, problem)

