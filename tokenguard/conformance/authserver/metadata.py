"""Spec §2.1: authorization-server metadata (RFC 8414; RFC 9449 §5.1; RFC 8705 §3.3, §5)."""

from __future__ import annotations

import json
import urllib.parse

from ..model import Recorder
from .common import case, claims_of
from .context import AsContext


@case("META-AS-01", "8414 §2, §3", "M", "metadata document",
      sent='GET the RFC 8414 metadata URL',
      expect=('(a) 200 JSON with issuer, response_types_supported, token_endpoint; (b) POLICY: jwks_uri, grant '
              'types, auth methods ⊇ the RFC 8705 ones, introspection endpoint and methods, PKCE S256 only; (c) '
              'mtls_endpoint_aliases, if present, an object of https URLs'))
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


@case("META-AS-02", "9449 §5.1", "M", "dpop_signing_alg_values_supported",
      sent='the same document',
      expect=('(a) SHOULD: dpop_signing_alg_values_supported present; (b) if present, a non-empty array of '
              'asymmetric algs'))
def meta_as_02(ctx: AsContext, rec: Recorder) -> None:
    algs = ctx.metadata.get("dpop_signing_alg_values_supported")
    problem = None
    if not isinstance(algs, list) or not algs:
        problem = "absent or not a non-empty array"
    elif any(not isinstance(a, str) or a == "none" or a.startswith("HS") for a in algs):
        problem = "lists none or a MAC alg"
    rec.record("", "non-empty array of asymmetric algs", f"{algs}", problem)


@case("META-AS-03", "8705 §3.3", "M", "tls_client_certificate_bound_access_tokens",
      sent='the same document',
      expect='(a) tls_client_certificate_bound_access_tokens, if present, a JSON boolean; (b) POLICY: it is true')
def meta_as_03(ctx: AsContext, rec: Recorder) -> None:
    value = ctx.metadata.get("tls_client_certificate_bound_access_tokens")
    rec.record("", "JSON true", json.dumps(value), None if value is True else "not the JSON boolean true")


@case("META-AS-04", "8414 §3, §3.3; 9068 §4", "M", "issuer identifier",
      sent='(a)/(b) the issuer the well-known suffix was inserted into; (c) a token by client_credentials',
      expect="issuer byte-identical to that identifier and to the AT's iss")
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
