"""§2.1 (docs/conformance-cases.md): authorization-server metadata (RFC 8414; RFC 9449 §5.1; RFC 8705 §3.3, §5)."""

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
    got = f"{res.status} {len(md)} members"
    # (a) What RFC 8414 itself requires: JSON (§3.2), issuer and response_types_supported (§2), and
    # a token_endpoint unless only the implicit grant is supported.
    problem = None
    if res.status != 200 or "application/json" not in ctype.lower():
        problem = f"status {res.status}, content-type {ctype or '-'}"
    else:
        grants = md.get("grant_types_supported") or ["authorization_code", "implicit"]
        required = ["issuer", "response_types_supported"]
        if grants != ["implicit"]:
            required.append("token_endpoint")
        missing = [m for m in required if m not in md]
        problem = f"missing {', '.join(missing)}" if missing else None
    rec.record("a", "200 JSON with the members RFC 8414 §2 requires", got, problem, "M")
    # (b) What this project's profile adds: members RFC 8414 leaves OPTIONAL but the resource
    # server and the mTLS / PKCE cases need.
    problem = None
    profile = ("jwks_uri", "grant_types_supported", "token_endpoint_auth_methods_supported",
               "introspection_endpoint", "introspection_endpoint_auth_methods_supported")
    missing = [m for m in profile if m not in md]
    methods = set(md.get("token_endpoint_auth_methods_supported") or [])
    if missing:
        problem = f"missing {', '.join(missing)} (OPTIONAL in RFC 8414)"
    elif not {"tls_client_auth", "self_signed_tls_client_auth"} <= methods:
        problem = "token_endpoint_auth_methods_supported lacks the RFC 8705 methods"
    elif md.get("code_challenge_methods_supported") != ["S256"]:
        problem = "code_challenge_methods_supported is not [\"S256\"]"
    rec.record("b", "profile members: jwks_uri, grants, auth methods incl. RFC 8705, introspection, PKCE S256",
               got, problem, "P")
    # (c) RFC 8705 §5: mtls_endpoint_aliases, when present, is an object of endpoint URLs (https: TLS).
    aliases = md.get("mtls_endpoint_aliases")
    if aliases is None:
        rec.skip("c", "no mtls_endpoint_aliases advertised", "M")
        return
    https_only = isinstance(aliases, dict) and all(
        isinstance(v, str) and v.startswith("https://") for v in aliases.values())
    rec.record("c", "mtls_endpoint_aliases is an object of https URLs", f"{len(aliases)} aliases"
               if isinstance(aliases, dict) else type(aliases).__name__,
               None if https_only else "not an object of https URLs", "M")


@case("META-AS-02", "9449 §5.1", "M", "dpop_signing_alg_values_supported",
      sent='the same document',
      expect=('(a) SHOULD: dpop_signing_alg_values_supported present; (b) if present, a non-empty array of '
              'asymmetric algs'))
def meta_as_02(ctx: AsContext, rec: Recorder) -> None:
    algs = ctx.metadata.get("dpop_signing_alg_values_supported")
    # RFC 9449 §5.1 defines the member without requiring it; FAPI 2 and this profile expect it.
    rec.record("a", "present", "absent" if algs is None else "present",
               "absent" if algs is None else None, "S")
    if algs is None:
        rec.skip("b", "not advertised", "M")
        return
    problem = None
    if not isinstance(algs, list) or not algs:
        problem = "not a non-empty array"
    elif any(not isinstance(a, str) or a == "none" or a.startswith("HS") for a in algs):
        problem = "lists none or a MAC alg (RFC 9449 §4.2 forbids both)"
    rec.record("b", "non-empty array of asymmetric algs", f"{algs}", problem, "M")


@case("META-AS-03", "8705 §3.3", "M", "tls_client_certificate_bound_access_tokens",
      sent='the same document',
      expect='(a) tls_client_certificate_bound_access_tokens, if present, a JSON boolean; (b) POLICY: it is true')
def meta_as_03(ctx: AsContext, rec: Recorder) -> None:
    value = ctx.metadata.get("tls_client_certificate_bound_access_tokens")
    # RFC 8705 §3.3: OPTIONAL, a boolean, false when omitted. Supporting it is this profile's choice.
    ok = value is None or isinstance(value, bool)
    rec.record("a", "absent or a JSON boolean", json.dumps(value), None if ok else "not a JSON boolean", "M")
    rec.record("b", "JSON true (profile: certificate-bound tokens)", json.dumps(value),
               None if value is True else "not the JSON boolean true", "P")


@case("META-AS-04", "8414 §3, §3.3; 9068 §4", "M", "issuer identifier",
      sent='(a)/(b) the issuer the well-known suffix was inserted into; (c) a token by client_credentials',
      expect="issuer byte-identical to that identifier and to the AT's iss")
def meta_as_04(ctx: AsContext, rec: Recorder) -> None:
    u = urllib.parse.urlsplit(ctx.metadata_url)
    wk, oidc = "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"
    if u.path.startswith(wk):  # RFC 8414 §3.1: the suffix is inserted between host and path
        issuer_path = u.path[len(wk):]
    elif u.path.endswith(oidc):  # OpenID Connect Discovery §4: the suffix is appended
        issuer_path = u.path[: -len(oidc)]
    else:
        issuer_path = None
    if issuer_path is None:
        rec.skip("a", "metadata URL is not a well-known URL")
        rec.skip("b", "metadata URL is not a well-known URL")
    else:
        expected = urllib.parse.urlunsplit((u.scheme, u.netloc, issuer_path, "", ""))
        got = ctx.metadata.get("issuer")
        sub = "b" if issuer_path else "a"
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
