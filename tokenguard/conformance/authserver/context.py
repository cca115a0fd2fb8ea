"""State for the authorization-server cases (docs/conformance-cases.md §2).

The AS's metadata, the clients the operator registered, nonces, TLS material.

Clients are given as ``--as-client ROLE:ID[:SECRET]``; a case needing a role that was not supplied
is skipped with the reason. All HTTP goes through :class:`..transport.HttpClient`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import secrets
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ..minting import Fixtures, b64u, cert_pem
from ..model import SkipCase
from ..transport import CertPair, Header, HttpClient, JsonResponse

ROLES = ("confidential", "dpop-required", "public", "introspect", "tls", "self-signed-tls", "cert-bound")
TLS_ROLES = ("tls", "self-signed-tls", "cert-bound")


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
    _jwks: dict[str, Any] | None = field(default=None)
    _http: HttpClient | None = field(default=None)
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

    # ---- HTTP (the suite's transport; never a second HTTP layer)
    @property
    def client_http(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient(timeout=self.timeout, ca=self.ca, insecure=self.insecure)
        return self._http

    def http(self, method: str, url: str, *, headers: list[Header] | None = None,
             form: dict[str, str] | None = None, cert: CertPair | None = None) -> JsonResponse:
        return self.client_http.request(method, url, headers=headers or (), form=form, cert=cert)

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

    # ---- proofs at the token endpoint (T-DPOP, docs/conformance-cases.md)
    def proof(self, url: str | None = None, *, key: str = "K1", htm: str = "POST", nonce: bool = True,
              **kw: Any) -> str:
        claims = dict(kw.pop("claims", {}) or {})
        if nonce and self.nonce and "nonce" not in claims:
            claims["nonce"] = self.nonce
        htu = kw.pop("htu", None) or url or self.endpoint("token_endpoint")
        return self.fx.proof(htm=htm, htu=htu, key=key, claims=claims, **kw)

    def token(self, form: dict[str, str], *, client: AsClient | None, proofs: list[str] | None = None,
              url: str | None = None, tls_cert: bool | CertPair = False, retry_nonce: bool = True,
              proof_kw: dict[str, Any] | None = None) -> JsonResponse:
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
        """An AS-issued nonce (NONCE-RS-04, docs/conformance-cases.md); None if the AS issues none."""
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

    def jwks(self) -> dict[str, Any]:
        """The AS's JWKS document from ``jwks_uri`` (fetched once)."""
        if self._jwks is None:
            res = self.http("GET", self.endpoint("jwks_uri"))
            self._jwks = res.body if isinstance(res.body, dict) else {"keys": []}
        return self._jwks
