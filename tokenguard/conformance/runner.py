"""Command line and orchestration: pre-flight, the mini issuer, §1 and/or §2, report, exit code.

``tokenguard conformance [options]`` runs the suite; ``tokenguard conformance init`` prints the
tokenguard config the cases assume; ``--list [--markdown]`` prints the case list (the Markdown is
docs/conformance-cases.md). Exit statuses are in :mod:`.report` (0, 1, 2 usage, 3 set-up).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Callable
from typing import TextIO

from . import listing, preflight, report
from .authserver import AS, AsContext, parse_as_client
from .expect import Profile
from .issuer import MiniIssuer
from .minting import CERT_FORMATS, Fixtures
from .model import CaseDef, Result, run_case
from .resource import RS, Knobs, RsContext
from .setup_config import (
    DEFAULT_ALGS,
    DEFAULT_AUDIENCE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ISSUER,
    DEFAULT_LEEWAY,
    DEFAULT_LISTEN,
    DEFAULT_NONCE,
    DEFAULT_RESOURCE,
    DEFAULT_WINDOW,
    DEFAULT_WRITE,
    Fixture,
    render,
)
from .transport import AuthRequestTransport, DirectTransport, Transport

EPILOG = """\
The verifier under test must trust the suite as an issuer: `tokenguard conformance init` prints a
complete tokenguard config for it (docs/conformance.md says what another verifier needs). A
pre-flight checks that set-up before any case runs and stops with what to configure.

Levels: MUST (the RFC text requires it), SHOULD (RFC SHOULD or strong interop expectation),
POLICY (this project's profile: pinned where the RFCs leave room). Case list: --list, or
docs/conformance-cases.md.

Exit status: 0 no MUST case failed (with --strict: no case failed); 1 otherwise;
2 bad options; 3 the pre-flight found the verifier not set up for the suite (no case ran).
"""


def _fixture_options(group: argparse._ArgumentGroup, *, for_init: bool = False) -> None:
    """What the suite assumes about the verifier; ``init`` writes a config that matches them."""
    group.add_argument("--issuer", metavar="URL", default=DEFAULT_ISSUER if for_init else None,
                       help="issuer identifier the suite serves (it listens on its host:port), "
                            f"e.g. {DEFAULT_ISSUER}")
    group.add_argument("--audience", default=DEFAULT_AUDIENCE, help="the verifier's RS identifier (aud)")
    group.add_argument("--algs", default=DEFAULT_ALGS,
                       help="DPoP algs the verifier is configured with (expected in algs=)")
    group.add_argument("--iat-window", default=DEFAULT_WINDOW, metavar="PAST:FUTURE",
                       help="the verifier's accepted DPoP iat window in seconds")
    group.add_argument("--leeway", type=int, default=DEFAULT_LEEWAY, help="the verifier's exp/nbf leeway in seconds")
    group.add_argument("--resource", default=DEFAULT_RESOURCE, metavar="URL",
                       help="external URL of a GET route needing scope read")
    group.add_argument("--write-resource", default=DEFAULT_WRITE, metavar="URL",
                       help="external URL of a POST route needing scope write")
    group.add_argument("--nonce-resource", metavar="URL", default=DEFAULT_NONCE if for_init else None,
                       help="external URL of a route with DPoP nonces on (NONCE-RS cases skip without it)")
    group.add_argument("--introspection-client-id", default=DEFAULT_CLIENT_ID)
    if not for_init:
        group.add_argument("--introspection-client-secret", default=DEFAULT_CLIENT_SECRET)
    group.add_argument("--cert-header", default="X-SSL-Client-Cert")
    group.add_argument("--cert-format", choices=CERT_FORMATS, default="escaped-pem")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tokenguard conformance`` (contract: ``--verifier URL --issuer URL [--junit]``)."""
    parser.epilog = EPILOG
    if not (isinstance(parser.formatter_class, type)
            and issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)):
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    rs = parser.add_argument_group("resource server (docs/conformance-cases.md §1)")
    rs.add_argument("--verifier", metavar="URL",
                    help="auth_request mode: the verifier's auth endpoint (http://127.0.0.1:8080/auth); "
                         "direct mode: where the proxy listens (https://127.0.0.1:8443), same as --connect")
    rs.add_argument("--mode", choices=("auth_request", "direct"), default="auth_request")
    rs.add_argument("--connect", metavar="HOST:PORT",
                    help="direct mode: dial HOST:PORT instead of the --resource URL's host (like curl "
                         "--connect-to); Host, TLS SNI and the certificate check still use the URL's host")
    _fixture_options(rs)
    rs.add_argument("--issuer-bind", metavar="HOST", help="listen address if not the issuer URL's host")
    rs.add_argument("--issuer-tls-cert", metavar="PEM", help="server certificate for an https --issuer")
    rs.add_argument("--issuer-tls-key", metavar="PEM")
    rs.add_argument("--cert-verify-header", default="X-SSL-Client-Verify",
                    help="header carrying $ssl_client_verify ('' to omit)")
    rs.add_argument("--ca", metavar="PEM", help="CA bundle for https connections made by the suite")
    rs.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    rs.add_argument("--timeout", type=float, default=10.0)
    rs.add_argument("--jwks-cooldown", type=int, default=30, metavar="SECONDS",
                    help="the verifier's minimum interval between JWKS refreshes; the suite waits at most this "
                         "long (+5 s) for one (pre-flight, JWT-RS-09)")
    rs.add_argument("--no-preflight", action="store_true",
                    help="run the cases even if the pre-flight finds the verifier not set up for them")

    asg = parser.add_argument_group("authorization server (docs/conformance-cases.md §2)")
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
                     help="turn off a POLICY case or sub-case, e.g. DPOP-RS-08 or MTLS-RS-04d (reported as a skip)")
    out.add_argument("--strict", action="store_true", help="exit 1 on SHOULD and POLICY failures too")
    out.add_argument("--json", action="store_true", help="print JSON instead of the table (reasons never clipped)")
    out.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE (reasons never clipped)")
    out.add_argument("-v", "--verbose", action="store_true", help="table without clipping: full reasons")
    out.add_argument("--no-color", action="store_true",
                     help="no colours (also when NO_COLOR is set or stdout is not a terminal)")
    out.add_argument("--list", action="store_true", help="list the cases and exit")
    out.add_argument("--markdown", action="store_true",
                     help="with --list: the Markdown case catalogue (docs/conformance-cases.md)")

    sub = parser.add_subparsers(dest="conformance_command", metavar="{init}")
    init = sub.add_parser("init", help="print a tokenguard config for running the suite against it",
                          description="Print a complete, valid tokenguard config (TOML) that trusts the suite's "
                                      "issuer and has the routes, algs and time window the cases assume.")
    group = init.add_argument_group("what the suite will be told (same options as a run)")
    _fixture_options(group, for_init=True)
    init.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT tokenguard listens on")


def _split(values: list[str]) -> set[str]:
    return {v.strip() for item in values for v in item.split(",") if v.strip()}


def _selected(cases: list[CaseDef], only: set[str]) -> list[CaseDef]:
    return [c for c in cases if not only or any(c.id.startswith(p) for p in only)]


def parse_window(text: str) -> tuple[int, int]:
    past, _, future = text.partition(":")
    return abs(int(past)), int(future or 0)


def fixture_of(args: argparse.Namespace) -> Fixture:
    """The suite's assumptions about the verifier, from the command line."""
    return Fixture(issuer=args.issuer or DEFAULT_ISSUER, audience=args.audience, algs=args.algs,
                   iat_window=args.iat_window, leeway=args.leeway, resource=args.resource,
                   write_resource=args.write_resource, nonce_resource=args.nonce_resource,
                   client_id=args.introspection_client_id,
                   client_secret=getattr(args, "introspection_client_secret", DEFAULT_CLIENT_SECRET),
                   cert_header=args.cert_header, cert_format=args.cert_format)


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


def rs_context(args: argparse.Namespace, fixtures: Fixtures, issuer: MiniIssuer | None,
               transport: Transport) -> RsContext:
    past, future = parse_window(args.iat_window)
    profile = Profile(algs=tuple(args.algs.split()),
                      rfc400_status=frozenset({401}) if args.mode == "auth_request" else frozenset({400, 401}))
    return RsContext(fixtures, transport, issuer, profile, Knobs(past, future, args.leeway, args.jwks_cooldown),
                     resource=args.resource, write_resource=args.write_resource,
                     nonce_resource=args.nonce_resource, verifier_url=args.verifier,
                     cert_header=args.cert_header)


def run_rs(args: argparse.Namespace, fixtures: Fixtures, issuer: MiniIssuer | None,
           as_nonce: Callable[[], str | None] | None, skip_policy: set[str], only: set[str],
           warn: Callable[[str], None] | None = None) -> list[Result]:
    """Spec §1 against ``--verifier``, after the pre-flight (which raises :class:`PreflightFailed`)."""
    transport = build_transport(args)
    ctx = rs_context(args, fixtures, issuer, transport)
    ctx.as_nonce = as_nonce
    results: list[Result] = []
    try:
        if not args.no_preflight:
            findings = preflight.run(ctx, fixture_of(args))
            if any(f.fatal for f in findings):
                raise preflight.PreflightFailed(findings)
            if findings and warn is not None:
                warn(preflight.render(findings))
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


def collect(args: argparse.Namespace, warn: Callable[[str], None] | None = None) -> list[Result]:
    """Run the selected cases and return their results.

    Raises SystemExit on bad options and :class:`preflight.PreflightFailed` when the verifier is
    not set up for the suite (unless ``--no-preflight``).
    """
    if args.mode == "direct" and args.connect and not args.verifier:
        args.verifier = args.connect
    if not args.verifier and not args.as_metadata:
        raise SystemExit("conformance: give --verifier (docs/conformance-cases.md §1; --connect in direct mode) "
                         "and/or --as-metadata (§2)")
    if args.mode == "auth_request" and args.connect:
        raise SystemExit("conformance: --connect applies to --mode direct only")
    for spec in args.as_client:
        parse_as_client(spec)  # fail early on a malformed --as-client
    skip_policy = _split(args.skip_policy)
    only = _split(args.only)
    fixtures = Fixtures(issuer=args.issuer or DEFAULT_ISSUER, audience=args.audience)
    results: list[Result] = []
    as_ctx = AsContext.from_args(args, fixtures) if args.as_metadata else None
    if as_ctx is not None and not args.no_preflight:
        findings = preflight.check_as_metadata(as_ctx)
        if findings:
            raise preflight.PreflightFailed(findings)
    if args.verifier:
        parsed = urllib.parse.urlsplit(args.issuer or "")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SystemExit("conformance: --verifier needs --issuer, an absolute http(s) URL "
                             "(the issuer the verifier trusts; the suite serves it)")
        try:
            issuer = MiniIssuer(fixtures, args.issuer, args.introspection_client_id,
                                args.introspection_client_secret, bind_host=args.issuer_bind,
                                tls_cert=args.issuer_tls_cert, tls_key=args.issuer_tls_key)
        except OSError as exc:
            raise SystemExit(f"conformance: cannot serve the issuer {args.issuer}: {exc.strerror or exc} "
                             "(is another run or server using that port? choose another --issuer)") from None
        with issuer:
            results += run_rs(args, fixtures, issuer, as_ctx.fetch_nonce if as_ctx else None,
                              skip_policy, only, warn)
    if as_ctx is not None:
        results += run_as(args, fixtures, skip_policy, only, as_ctx)
    return results


def use_colour(stream: TextIO, disabled: bool = False) -> bool:
    """Colour only for a terminal, and never with NO_COLOR (https://no-color.org) or TERM=dumb."""
    if disabled or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def run(args: argparse.Namespace) -> int:
    """Entry point shared by ``tokenguard conformance`` and ``python -m tokenguard.conformance``."""
    if getattr(args, "conformance_command", None) == "init":
        print(render(fixture_of(args), args.listen), end="")
        return report.EXIT_OK
    if args.list:
        cases = RS.ordered() + AS.ordered()
        print(listing.markdown(RS.ordered(), AS.ordered()) if args.markdown else listing.plain(cases), end="")
        return report.EXIT_OK

    def warn(text: str) -> None:
        print(text, file=sys.stderr)

    try:
        results = collect(args, warn)
    except preflight.PreflightFailed as exc:
        print(preflight.render(exc.findings), file=sys.stderr)
        return report.EXIT_SETUP
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return report.EXIT_USAGE
    if args.json:
        print(report.to_json(results))
    else:
        print(report.table(results, verbose=args.verbose, colour=use_colour(sys.stdout, args.no_color)))
    if args.junit:
        with open(args.junit, "wb") as fh:
            fh.write(report.to_junit(results))
    return report.exit_code(results, args.strict)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenguard conformance",
                                description="Black-box conformance suite for DPoP / mTLS / bearer "
                                            "verifiers and authorization servers.")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))
