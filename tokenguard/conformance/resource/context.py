"""Per-run state for the resource-server cases: fixtures, transport, mini issuer, knobs."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..expect import Expect, Profile
from ..issuer import MiniIssuer
from ..minting import Fixtures, now, public_jwk, random_opaque_token, thumbprint
from ..model import Recorder, SkipCase
from ..transport import ClientCert, Header, Outgoing, Response, Transport


@dataclass
class Knobs:
    """Verifier settings the time-dependent cases depend on (docs/conformance-cases.md, Notation fixture by default)."""

    iat_past: int = 60
    iat_future: int = 15
    leeway: int = 60
    jwks_cooldown: int = 30  # the verifier's minimum interval between JWKS refreshes


class RsContext:
    """Everything a §1 case needs; tokens and proofs are minted fresh for every request."""

    def __init__(self, fixtures: Fixtures, transport: Transport, issuer: MiniIssuer | None,
                 profile: Profile, knobs: Knobs, *, resource: str, write_resource: str,
                 nonce_resource: str | None, verifier_url: str, cert_header: str) -> None:
        self.fx = fixtures
        self.transport = transport
        self.issuer = issuer
        self.profile = profile
        self.knobs = knobs
        self.resource = resource
        self.write_resource = write_resource
        self.nonce_resource = nonce_resource
        self.verifier_url = verifier_url
        self.cert_header = cert_header
        self.as_nonce: Callable[[], str | None] | None = None  # NONCE-RS-04, set by the runner

    @property
    def mode(self) -> str:
        return self.transport.mode

    # ---- URLs
    @staticmethod
    def without_query(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def url(self, which: str = "read", query: str | None = "x=1") -> str:
        """The external request URL (baseline, docs/conformance-cases.md: ``GET https://api.test/resource?x=1``)."""
        base = {"read": self.resource, "write": self.write_resource,
                "nonce": self.nonce_resource or ""}[which]
        base = self.without_query(base)
        return f"{base}?{query}" if query else base

    # ---- tokens
    def at(self, bind: str | None = None, **kw: Any) -> str:
        return self.fx.access_token(bind=bind, **kw)

    def at_for_key(self, jwk: dict[str, Any], **kw: Any) -> str:
        """AT_D bound to ``jwk``, so only the proof defect under test can fail."""
        return self.fx.access_token(cnf={"jkt": thumbprint(jwk)}, **kw)

    def opaque(self, body: dict[str, Any] | None, status: int = 200) -> str:
        """An opaque token whose introspection answer is scripted (RFC 7662 §2.2)."""
        if self.issuer is None:
            raise SkipCase("needs the suite's own issuer (--issuer) for introspection")
        token = random_opaque_token()
        self.issuer.script(token, body, status)
        return token

    def active(self, **extra: Any) -> dict[str, Any]:
        t0 = now()
        body = {"active": True, "iss": self.fx.issuer, "aud": self.fx.audience, "sub": "u1",
                "client_id": "c1", "scope": "read", "iat": t0, "exp": t0 + 600}
        body.update(extra)
        return body

    # ---- proofs
    def proof(self, token: str | None, *, url: str | None = None, htm: str = "GET",
              **kw: Any) -> str:
        htu = kw.pop("htu", None) or self.without_query(url or self.url())
        return self.fx.proof(htm=htm, htu=htu, token=token, **kw)

    def cert(self, name: str) -> ClientCert:
        return {"CERT1": ClientCert(self.fx.cert1, self.fx.c1),
                "CERT1b": ClientCert(self.fx.cert1b, self.fx.c1),
                "CERT2": ClientCert(self.fx.cert2, self.fx.c2)}[name]

    # ---- sending
    def send(self, *, method: str = "GET", url: str | None = None,
             authorization: str | Sequence[str] | None = None,
             dpop: str | Sequence[str] | None = None, dpop_name: str = "DPoP",
             cert: str | None = None, headers: Sequence[Header] = (), **out: Any) -> Response:
        hdrs: list[Header] = []
        for value in [authorization] if isinstance(authorization, str) else (authorization or []):
            hdrs.append(("Authorization", value))
        for value in [dpop] if isinstance(dpop, str) else (dpop or []):
            hdrs.append((dpop_name, value))
        hdrs += list(headers)
        req = Outgoing(method=method, url=url or self.url(), headers=hdrs,
                       cert=self.cert(cert) if cert else None, **out)
        return self.transport.send(req)

    def b_dpop(self, *, token: str | None = None, scheme: str = "DPoP", url: str | None = None,
               method: str = "GET", proof_kw: dict[str, Any] | None = None, **send_kw: Any) -> Response:
        """B-DPOP (docs/conformance-cases.md, Notation) with the given deltas."""
        token = token if token is not None else self.at("jkt")
        kw = {"htm": method, **(proof_kw or {})}
        proof = self.proof(token, url=url, **kw)
        return self.send(method=method, url=url, authorization=f"{scheme} {token}", dpop=proof, **send_kw)

    def b_bearer(self, token: str | None = None, **send_kw: Any) -> Response:
        token = token if token is not None else self.at()
        return self.send(authorization=f"Bearer {token}", **send_kw)

    def b_mtls(self, token: str | None = None, cert: str | None = "CERT1", **send_kw: Any) -> Response:
        token = token if token is not None else self.at("x5t")
        return self.send(authorization=f"Bearer {token}", cert=cert, **send_kw)

    # ---- judging
    def check(self, rec: Recorder, sub: str, expect: Expect, send: Callable[[], Response],
              level: str | None = None) -> Response | None:
        """Send (unless the policy sub-case is off) and record pass/fail with the reason."""
        if not rec.wants(sub, level):
            rec.policy_skip(sub, level or "P", expect.text)
            return None
        resp = send()
        rec.record(sub, expect.text, resp.summary(), expect.judge(resp), level)
        return resp

    def only_auth_request(self, rec: Recorder, sub: str, why: str, level: str | None = None) -> bool:
        """Header-level cases need the suite to play the proxy; in direct mode they are skipped."""
        if self.mode == "auth_request":
            return True
        rec.skip(sub, f"needs --mode auth_request ({why})", level)
        return False

    def jwk(self, name: str) -> dict[str, Any]:
        return public_jwk(self.fx.key(name))
