"""Command line and orchestration: start the mini issuer, run §1 and/or §2, report, exit code."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Callable

from . import report
from .authserver import AS, AsContext, parse_as_client
from .expect import Profile
from .issuer import MiniIssuer
from .minting import CERT_FORMATS, Fixtures
from .model import CaseDef, Result, run_case
from .resource import RS, Knobs, RsContext
from .transport import AuthRequestTransport, DirectTransport, Transport

EPILOG = """\
The verifier under test must trust the suite as an issuer: point its [[issuer]] at --issuer
(metadata at <issuer>/.well-known/oauth-authorization-server, JWKS at <issuer>/jwks,
introspection at <issuer>/introspect with client_secret_basic --introspection-client-id/-secret),
audience --audience, DPoP algs --algs, and the time window the cases assume (--iat-window, --leeway;
spec fixture: iat -60..+15 s, leeway 60 s). Routes: GET --resource needs scope "read",
POST --write-resource needs "write", --nonce-resource has DPoP nonces on; all accept any binding.

Exit status: 1 if any MUST case failed (with --strict: any failure); 0 otherwise.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tokenguard conformance`` (contract: ``--verifier URL --issuer URL [--junit]``)."""
    rs = parser.add_argument_group("resource server (spec §1)")
    rs.add_argument("--verifier", metavar="URL",
                    help="auth_request mode: the verifier's auth endpoint (http://127.0.0.1:8080/auth); "
                         "direct mode: where the proxy listens (https://127.0.0.1:8443), same as --connect")
    rs.add_argument("--mode", choices=("auth_request", "direct"), default="auth_request")
    rs.add_argument("--connect", metavar="HOST:PORT",
                    help="direct mode: dial HOST:PORT instead of the --resource URL's host (like curl "
                         "--connect-to); Host, TLS SNI and the certificate check still use the URL's host")
    rs.add_argument("--issuer", metavar="URL",
                    help="issuer identifier the suite serves (listens on its host:port), e.g. http://127.0.0.1:9400")
    rs.add_argument("--issuer-bind", metavar="HOST", help="listen address if not the issuer URL's host")
    rs.add_argument("--issuer-tls-cert", metavar="PEM", help="server certificate for an https --issuer")
    rs.add_argument("--issuer-tls-key", metavar="PEM")
    rs.add_argument("--introspection-client-id", default="conformance")
    rs.add_argument("--introspection-client-secret", default="conformance-secret")
    rs.add_argument("--resource", default="https://api.test/resource", metavar="URL",
                    help="external URL of a GET route needing scope read")
    rs.add_argument("--write-resource", default="https://api.test/write", metavar="URL",
                    help="external URL of a POST route needing scope write")
    rs.add_argument("--nonce-resource", metavar="URL",
                    help="external URL of a route with DPoP nonces on (NONCE-RS cases skip without it)")
    rs.add_argument("--audience", default="https://api.test")
    rs.add_argument("--algs", default="ES256 PS256 EdDSA",
                    help="DPoP algs the verifier is configured with (expected in algs=)")
    rs.add_argument("--iat-window", default="60:15", metavar="PAST:FUTURE",
                    help="the verifier's accepted DPoP iat window in seconds")
    rs.add_argument("--leeway", type=int, default=60, help="the verifier's exp/nbf leeway in seconds")
    rs.add_argument("--cert-header", default="X-SSL-Client-Cert")
    rs.add_argument("--cert-format", choices=CERT_FORMATS, default="escaped-pem")
    rs.add_argument("--cert-verify-header", default="X-SSL-Client-Verify",
                    help="header carrying $ssl_client_verify ('' to omit)")
    rs.add_argument("--ca", metavar="PEM", help="CA bundle for https connections made by the suite")
    rs.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    rs.add_argument("--timeout", type=float, default=10.0)

    asg = parser.add_argument_group("authorization server (spec §2)")
    asg.add_argument("--as-metadata", metavar="URL", help="RFC 8414 metadata URL of the AS under test")
    asg.add_argument("--as-client", action="append", default=[], metavar="ROLE:ID[:SECRET]",
                     help="a client registered at the AS; roles: confidential, dpop-required, public, "
                          "introspect, tls, self-signed-tls, cert-bound (repeatable)")
    asg.add_argument("--as-scope", metavar="SCOPE", help="scope to request at the AS (e.g. 'read offline_access')")
    asg.add_argument("--as-redirect-uri", metavar="URI", help="redirect_uri of the public client")
    asg.add_argument("--as-tls-cert", action="append", default=[], metavar="[ROLE=]PEM",
                     help="client certificate registered for the tls / self-signed-tls / cert-bound client; "
                          "ROLE= gives one per role, without it the certificate serves every role (repeatable)")
    asg.add_argument("--as-tls-key", action="append", default=[], metavar="[ROLE=]PEM",
                     help="private key of the matching --as-tls-cert")
    asg.add_argument("--as-nonce", action="store_true",
                     help="the AS requires DPoP nonces at the token endpoint (enables NONCE-AS cases)")

    out = parser.add_argument_group("selection and output")
    out.add_argument("--only", action="append", default=[], metavar="PREFIX",
                     help="run only cases whose id starts with PREFIX (repeatable, comma-separated)")
    out.add_argument("--skip-policy", action="append", default=[], metavar="ID",
                     help="turn off a policy (P) case or sub-case, e.g. DPOP-RS-08 or MTLS-RS-04d")
    out.add_argument("--strict", action="store_true", help="exit 1 on SHOULD and POLICY failures too")
    out.add_argument("--json", action="store_true", help="print JSON instead of the table")
    out.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    out.add_argument("--list", action="store_true", help="list the cases and exit")


def _split(values: list[str]) -> set[str]:
    return {v.strip() for item in values for v in item.split(",") if v.strip()}


def _selected(cases: list[CaseDef], only: set[str]) -> list[CaseDef]:
    return [c for c in cases if not only or any(c.id.startswith(p) for p in only)]


def parse_window(text: str) -> tuple[int, int]:
    past, _, future = text.partition(":")
    return abs(int(past)), int(future or 0)


def build_transport(args: argparse.Namespace) -> Transport:
    if args.mode == "direct":
        try:
            return DirectTransport(args.connect or args.verifier, timeout=args.timeout, ca=args.ca,
                                   insecure=args.insecure)
        except ValueError as exc:
            raise SystemExit(f"conformance: --connect: {exc}") from None
    return AuthRequestTransport(args.verifier, cert_header=args.cert_header, cert_format=args.cert_format,
                                verify_header=args.cert_verify_header, timeout=args.timeout, ca=args.ca,
                                insecure=args.insecure)


def run_rs(args: argparse.Namespace, fixtures: Fixtures, issuer: MiniIssuer | None,
           as_nonce: Callable[[], str | None] | None, skip_policy: set[str], only: set[str]) -> list[Result]:
    """Spec §1 against ``--verifier``."""
    transport = build_transport(args)
    past, future = parse_window(args.iat_window)
    profile = Profile(algs=tuple(args.algs.split()),
                      rfc400_status=frozenset({401}) if args.mode == "auth_request" else frozenset({400, 401}))
    ctx = RsContext(fixtures, transport, issuer, profile, Knobs(past, future, args.leeway),
                    resource=args.resource, write_resource=args.write_resource,
                    nonce_resource=args.nonce_resource, verifier_url=args.verifier,
                    cert_header=args.cert_header)
    ctx.as_nonce = as_nonce
    results: list[Result] = []
    try:
        for case in _selected(RS.ordered(), only):
            results += run_case(case, ctx, skip_policy)
    finally:
        transport.close()
    return results


def run_as(args: argparse.Namespace, fixtures: Fixtures, skip_policy: set[str], only: set[str],
           ctx: AsContext | None = None) -> list[Result]:
    """Spec §2 against ``--as-metadata``."""
    ctx = ctx or AsContext.from_args(args, fixtures)
    results: list[Result] = []
    for case in _selected(AS.ordered(), only):
        results += run_case(case, ctx, skip_policy)
    return results


def collect(args: argparse.Namespace) -> list[Result]:
    """Run the selected cases and return their results (raises SystemExit on bad options)."""
    if args.mode == "direct" and args.connect and not args.verifier:
        args.verifier = args.connect
    if not args.verifier and not args.as_metadata:
        raise SystemExit("conformance: give --verifier (spec §1; --connect in direct mode) "
                         "and/or --as-metadata (spec §2)")
    if args.mode == "auth_request" and args.connect:
        raise SystemExit("conformance: --connect applies to --mode direct only")
    for spec in args.as_client:
        parse_as_client(spec)  # fail early on a malformed --as-client
    skip_policy = _split(args.skip_policy)
    only = _split(args.only)
    fixtures = Fixtures(issuer=args.issuer or "http://127.0.0.1:9400", audience=args.audience)
    results: list[Result] = []
    as_ctx = AsContext.from_args(args, fixtures) if args.as_metadata else None
    if args.verifier:
        parsed = urllib.parse.urlsplit(args.issuer or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SystemExit("conformance: --verifier needs --issuer, an absolute http(s) URL "
                             "(the issuer the verifier trusts; the suite serves it)")
        issuer = MiniIssuer(fixtures, args.issuer, args.introspection_client_id,
                            args.introspection_client_secret, bind_host=args.issuer_bind,
                            tls_cert=args.issuer_tls_cert, tls_key=args.issuer_tls_key)
        with issuer:
            results += run_rs(args, fixtures, issuer, as_ctx.fetch_nonce if as_ctx else None,
                              skip_policy, only)
    if as_ctx is not None:
        results += run_as(args, fixtures, skip_policy, only, as_ctx)
    return results


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``tokenguard conformance`` and ``python -m tokenguard.conformance``."""
    if args.list:
        for c in RS.ordered() + AS.ordered():
            print(f"{c.id:12} {c.level}  {c.ref:40} {c.title}")
        return 0
    try:
        results = collect(args)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(report.to_json(results))
    else:
        print(report.table(results))
    if args.junit:
        with open(args.junit, "wb") as fh:
            fh.write(report.to_junit(results))
    return report.exit_code(results, args.strict)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenguard conformance", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Black-box conformance suite for DPoP / mTLS / bearer "
                                                 "verifiers and authorization servers.")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))
