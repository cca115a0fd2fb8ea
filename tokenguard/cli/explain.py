"""``tokenguard explain``: every check of one request, in order, and exactly the answer ``/auth`` would give.

The request (flags, a ``curl`` command line, or a raw HTTP request on stdin, :mod:`.request_input`) is
handed to the service that :mod:`tokenguard.settings.wiring` builds from the config, as the trusted proxy
would describe it, through the same adapter, ``Verifier.decide`` and ``Responder`` as ``/auth``. The
verifier reports each check to a read-only :class:`~tokenguard.core.trace.Trace`: nothing is re-implemented
here, so the explanation cannot drift from the decision. Keys come from the issuer as the service fetches
them (``--jwks FILE``: an offline key set instead); the replay store is asked whether a proof was seen,
never written; a missing nonce secret or state directory is not created.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives.serialization import Encoding

from tokenguard.cli.request_input import ClientRequest, from_curl, from_flags, from_http
from tokenguard.client.errors import ClientError
from tokenguard.client.http import auth_request_headers
from tokenguard.client.keys import read_text
from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.jwks import KeyRecord
from tokenguard.core.jws import JWSError, parse_compact
from tokenguard.core.metadata import FetchJson
from tokenguard.core.replay import PingByStatus, ReplayStore, StoreStatus, scheme_of
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.trace import Check, Trace
from tokenguard.keysets import FileKeyStore
from tokenguard.outbound import http_fetch_json
from tokenguard.settings import Config, ConfigError, load_config
from tokenguard.settings.replay import replay_store
from tokenguard.settings.wiring import NONCE_SECRET_FILE, build_service
from tokenguard.web.adapters import Incoming
from tokenguard.web.responses import Answer

EXIT_ALLOW, EXIT_DENY = 0, 1
EXPLAIN_REQUEST_ID = "tokenguard-explain"
AUTH_PATH = "/auth"


# -- how the proxy hands the request over ---------------------------------------------------------------


@dataclass(frozen=True)
class _Fields:
    """Header fields of the sub-request, each line kept (an engine that folds them changes no decision)."""

    pairs: tuple[tuple[str, str], ...]

    def values(self, name: str) -> tuple[str, ...]:
        return tuple(value for key, value in self.pairs if key.lower() == name.lower())

    def fields(self) -> tuple[tuple[str, str], ...]:
        return self.pairs


#: The client certificate as each ``mtls.cert_format`` carries it (``web.certs`` reads these back).
CERT_WRITERS = {
    "escaped-pem": lambda der, pem: quote(pem, safe=""),
    "base64-der": lambda der, pem: _b64(der),
    "xfcc": lambda der, pem: f'Cert="{quote(pem, safe="")}"',
    "rfc9440": lambda der, pem: f":{_b64(der)}:",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def proxy_address(config: Config) -> str | None:
    """An address inside ``server.trusted_proxies`` (the proxy the request comes through), or None."""
    for cidr in config.server.trusted_proxies:
        network = ipaddress.ip_network(cidr, strict=False)
        return str(next(network.hosts(), network.network_address))
    return None


def sub_request(request: ClientRequest, config: Config, endpoint: bool) -> Incoming:
    """The auth sub-request a trusted proxy sends for ``request`` (nginx ``auth_request`` conventions), or,
    with ``endpoint``, the pasted sub-request itself."""
    parts = urlsplit(request.url)
    if endpoint:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return Incoming(request.method, parts.path, target, parts.scheme, proxy_address(config),
                        _Fields(tuple(request.headers)))
    described = auth_request_headers(request.method, request.url)
    fields = [("Host", parts.netloc),
              (config.proxy.original_method_header, described.pop("X-Original-Method")),
              (config.proxy.original_uri_header, described.pop("X-Original-URI")), *described.items()]
    fields += [(name, value) for name, value in request.headers if name.lower() != "host"]
    if not any(name.lower() == "x-request-id" for name, _ in fields):
        fields.append(("X-Request-Id", EXPLAIN_REQUEST_ID))  # the same answer every time, and says where it came from
    if request.cert is not None:
        writer = CERT_WRITERS.get(config.mtls.cert_format)
        if writer is None:
            raise ClientError(f"explain cannot present a certificate as mtls.cert_format = {config.mtls.cert_format}")
        der = request.cert.public_bytes(Encoding.DER)
        fields.append((config.mtls.cert_header, writer(der, request.cert.public_bytes(Encoding.PEM).decode())))
    return Incoming("GET", AUTH_PATH, AUTH_PATH, parts.scheme, proxy_address(config), _Fields(tuple(fields)))


# -- the service, read-only -------------------------------------------------------------------------------


class _PeekKeyStore:
    """The host's persisted key sets, read but never written or locked (explain creates no state)."""

    def __init__(self, files: FileKeyStore) -> None:
        self.files = files

    def load(self, issuer: str) -> KeyRecord | None:
        return self.files.load(issuer) if self.files.directory.is_dir() else None

    def save(self, issuer: str, record: KeyRecord) -> None:
        return None

    def exclusive(self, issuer: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class _UnopenedStore(PingByStatus):
    """The replay store explain could not open: every question fails closed, as the service would."""

    def __init__(self, why: str) -> None:
        self.why = why

    def first_use(self, key: str, ttl: float) -> bool:
        raise ReplayStoreUnavailable(self.why)

    def seen(self, key: str) -> bool:
        raise ReplayStoreUnavailable(self.why)

    def epoch_for(self, key: str) -> float:
        return 0.0

    def status(self) -> StoreStatus:
        return StoreStatus("unopened", problem=ReplayStoreUnavailable(self.why))

    def close(self) -> None:
        return None


def read_only_state(config: Config, notes: list[str]) -> tuple[Config, ReplayStore]:
    """The config with the host's nonce secret (never created), and the replay store to ask (never written)."""
    state = config.state_dir
    dpop = config.dpop
    if not (dpop.nonce_secret or dpop.nonce_secret_file) and any(r.dpop_nonce for r in config.policy.routes):
        path = state / NONCE_SECRET_FILE
        secret = ""
        try:
            secret = path.read_text().strip()
        except FileNotFoundError:
            notes.append(f"no nonce secret in {state} yet: a proof's nonce is judged against a throw-away secret")
        except OSError as exc:
            notes.append(f"cannot read {path} ({exc.strerror}): a proof's nonce is judged against a throw-away "
                         "secret; run explain as the service's user")
        config = dataclasses.replace(config, dpop=dataclasses.replace(
            dpop, nonce_secret=secret or secrets.token_urlsafe(32)))
    elif not (dpop.nonce_secret or dpop.nonce_secret_file):  # no route asks for nonces: never read one
        config = dataclasses.replace(config, dpop=dataclasses.replace(dpop, nonce_secret=secrets.token_urlsafe(32)))
    spec = config.replay.store
    if scheme_of(spec) == "memory":
        notes.append("replay.store = memory lives inside the server process: explain cannot see which proofs it "
                     "has recorded")
        return config, MemoryReplayStore()
    if spec == "embedded" and not state.is_dir():
        notes.append(f"no state directory {state} yet: no proof has been recorded on this host")
        return config, MemoryReplayStore()
    try:
        return config, replay_store(config)  # the service's own layout: another one would be a new store
    except Exception as exc:  # any store's own error type: shown as the outage the service would have
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        return config, _UnopenedStore(f"explain cannot open replay store {scheme_of(spec)}: {reason}")


def _offline_keys(config: Config, jwks_file: str) -> tuple[Config, FetchJson]:
    """Every issuer's keys from ``jwks_file`` instead of its ``jwks_uri``."""
    path = Path(jwks_file).resolve()
    try:
        document = json.loads(read_text(str(path), "JWKS"))
    except json.JSONDecodeError as exc:
        raise ClientError(f"--jwks {jwks_file}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ClientError(f'--jwks {jwks_file}: not a JWK Set (a JSON object with a "keys" list)')
    uri = path.as_uri()
    online = http_fetch_json()

    def fetch(url: str) -> Mapping[str, Any]:
        return document if url == uri else online(url)

    issuers = tuple(dataclasses.replace(issuer, jwks_uri=uri) for issuer in config.issuers)
    return dataclasses.replace(config, issuers=issuers), fetch


# -- the explanation ----------------------------------------------------------------------------------------


@dataclass
class Explanation:
    request: ClientRequest
    endpoint: bool  # the input was a captured sub-request to an auth endpoint
    checks: list[Check]
    answer: Answer
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> Check | None:
        if self.answer.allow:
            return None
        return next((check for check in reversed(self.checks) if not check.ok), None)


def explain(config: Config, request: ClientRequest, *, jwks_file: str | None = None) -> Explanation:
    """Run ``request`` through the service ``config`` describes, read-only, and collect every check."""
    notes: list[str] = []
    if not config.issuers:
        notes.append(f"{config.source} trusts no [[issuer]]: every JWT access token is refused")
    if proxy_address(config) is None:
        notes.append("server.trusted_proxies is empty: forwarded headers and certificates are ignored")
    config, store = read_only_state(config, notes)
    options: dict[str, Any] = {"replay": store, "keys": _PeekKeyStore(FileKeyStore(config.state_dir)),
                               "background_keys": False}
    if jwks_file:
        config, options["fetch"] = _offline_keys(config, jwks_file)
        notes.append(f"issuer keys from {jwks_file} (--jwks), not from the issuers' jwks_uri")
    service = build_service(config, **options)
    endpoint = request.source == "stdin" and service.adapters.for_path(urlsplit(request.url).path) is not None
    trace = Trace(read_only=True)
    answer = service.handle(sub_request(request, config, endpoint), trace)
    return Explanation(request, endpoint, trace.checks, answer, notes)


def decode_jwt(text: str) -> dict[str, Any] | None:
    """Header and claims of a JWT, unverified, for display (the signature is left out); None if not one."""
    try:
        jws = parse_compact(text.strip())
    except JWSError:
        return None
    return {"header": jws.header, "claims": jws.payload}


def credentials(request: ClientRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The access token(s) and proof(s) the request carries, decoded for the person who holds them."""
    tokens = []
    for value in request.values("Authorization"):
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        decoded = decode_jwt(token) if token.count(".") == 2 else None
        tokens.append({"scheme": scheme, "length": len(token), "jwt": decoded})
    proofs = []
    for value in request.values("DPoP"):
        for part in value.split(","):
            decoded = decode_jwt(part)
            proofs.append({"length": len(part.strip()), "jwt": decoded})
    return tokens, proofs


def as_json(result: Explanation) -> dict[str, Any]:
    tokens, proofs = credentials(result.request)
    request = result.request
    failed = result.failed
    return {
        "request": {"method": request.method, "url": request.url, "source": request.source,
                    "auth_sub_request": result.endpoint, "ignored": request.ignored,
                    "certificate": request.cert is not None},
        "access_tokens": tokens, "proofs": proofs,
        "checks": [check._asdict() for check in result.checks],
        "failed": failed._asdict() if failed is not None else None,
        "decision": {"outcome": result.answer.decision.outcome.value, "status": result.answer.status,
                     "reason": result.answer.reason, "headers": [list(h) for h in result.answer.headers]},
        "notes": result.notes,
    }


# -- text ---------------------------------------------------------------------------------------------------


class _Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text


def printable(text: str) -> str:
    """Text for a terminal: control and other unprintable characters escaped (a pasted token could hold
    escape sequences)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _json_block(value: Any, indent: str) -> list[str]:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return [indent + printable(line) for line in text.splitlines()]


def as_text(result: Explanation, colour: bool) -> str:
    style = _Style(colour)
    request = result.request
    lines = [style("Request", "1"), f"  {request.method} {printable(request.url)}   (from {request.source})"]
    if result.endpoint:
        lines.append("  read as the auth sub-request a proxy sent (its forwarded headers describe the request)")
    else:
        lines.append("  handed to /auth as a trusted proxy describes it (nginx auth_request headers)")
    if request.ignored:
        lines.append(f"  ignored (no bearing on the decision): {printable(', '.join(request.ignored))}")
    tokens, proofs = credentials(request)
    for token in tokens:
        kind = "a JWT" if token["jwt"] else "not a JWT (opaque, or malformed)"
        lines += ["", style("Access token", "1") + f"  {printable(token['scheme'])}, {token['length']} characters, "
                  f"{kind}; signature not shown"]
        if token["jwt"]:
            lines += ["  header", *_json_block(token["jwt"]["header"], "    "),
                      "  claims", *_json_block(token["jwt"]["claims"], "    ")]
    for number, proof in enumerate(proofs, start=1):
        title = "DPoP proof" + (f" {number}" if len(proofs) > 1 else "")
        lines += ["", style(title, "1") + f"  {proof['length']} characters"
                  + ("; signature not shown" if proof["jwt"] else ", not a JWT")]
        if proof["jwt"]:
            lines += ["  header", *_json_block(proof["jwt"]["header"], "    "),
                      "  claims", *_json_block(proof["jwt"]["claims"], "    ")]
    lines += ["", style("Checks, in the order the verifier ran them", "1")]
    failed = result.failed
    for check in result.checks:
        mark = style("✓", "32") if check.ok else style("✗", "31;1")
        name = check.step if check is not failed else style(check.step, "31;1")
        lines.append(f"  {mark} {name}   {style(check.section, '2')}")
        lines.append(f"      expected  {printable(check.expected)}")
        lines.append(f"      got       {printable(check.got)}")
    if failed is not None:
        lines.append(style("  (the checks after the failing one did not run)", "2"))
    answer = result.answer
    verdict = style("allowed", "32;1") if answer.allow else style("denied", "31;1") if answer.status in (401, 403) \
        else style("failed closed", "31;1")
    lines += ["", style("Decision", "1") + f"  {verdict}: what /auth answers", f"  HTTP {answer.status}"]
    lines += [f"  {name}: {printable(value)}" for name, value in answer.headers]
    if failed is not None:
        lines.append(f"  because: {failed.step} ({failed.section})")
    if result.notes:
        lines += ["", style("Notes", "1"), *(f"  - {printable(note)}" for note in result.notes)]
    return "\n".join(lines)


# -- the verb -------------------------------------------------------------------------------------------------

EPILOG = """\
The request comes from flags, from a curl command line (--curl), or as raw HTTP on stdin (-): the
request line, header lines and a blank line. A pasted request to /auth or /envoy/... is read as the
sub-request a proxy sent. Tokens and proofs are shown decoded (you hold them); the replay store is
only asked whether a proof was used, never written. Exits 0 if /auth would allow, 1 if it would not.

examples:
  tokenguard explain --config tokenguard.toml --method GET --url https://api.example/orders \\
      --authorization "DPoP $AT" --dpop "$PROOF"
  tokenguard explain --config tokenguard.toml --curl 'curl -H "Authorization: DPoP eyJ..." \\
      -H "DPoP: eyJ..." https://api.example/orders'
  printf 'GET /orders HTTP/1.1\\r\\nHost: api.example\\r\\nAuthorization: DPoP eyJ...\\r\\n\\r\\n' | \\
      tokenguard explain --config tokenguard.toml -
  tokenguard explain --config tokenguard.toml --jwks issuer-keys.json --json --curl '...'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stdin", nargs="?", choices=["-"], metavar="-",
                        help="read a raw HTTP request from stdin")
    parser.add_argument("--config", metavar="F", help="tokenguard config (default: $TOKENGUARD_CONFIG, or defaults)")
    given = parser.add_argument_group("the request as flags")
    given.add_argument("--method", "-m", metavar="M", help="HTTP method")
    given.add_argument("--url", "-u", metavar="U", help="absolute URL the client called")
    given.add_argument("--authorization", "-a", action="append", default=[], metavar="A",
                       help='Authorization value ("DPoP <token>"), @file, or - for stdin (repeatable)')
    given.add_argument("--dpop", action="append", default=[], metavar="P",
                       help="DPoP proof, @file, or - for stdin (repeatable)")
    given.add_argument("--header", "-H", action="append", default=[], metavar="'Name: value'",
                       help="another header field (repeatable)")
    parser.add_argument("--cert", metavar="C", help="client certificate (PEM or DER) the client presented in TLS")
    parser.add_argument("--curl", metavar="'curl …'", help="the request as a curl command line")
    parser.add_argument("--scheme", choices=("https", "http"), default="https",
                        help="scheme of a raw request with an origin-form target (default: https)")
    parser.add_argument("--jwks", metavar="FILE", help="use this JWK Set for every issuer instead of fetching keys")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour: auto = on a terminal unless $NO_COLOR is set (default: auto)")
    parser.epilog = EPILOG
    parser.set_defaults(func=run)


def _value(text: str, what: str) -> str:
    """A literal, ``@file`` or ``-`` (stdin) value, stripped of its line end."""
    if text == "-" or text.startswith("@"):
        return read_text(text, what).strip()
    return text


def read_request(args: argparse.Namespace) -> ClientRequest:
    forms = [name for name, given in (("--curl", args.curl is not None), ("-", args.stdin is not None),
                                      ("--method/--url", bool(args.method or args.url))) if given]
    if len(forms) != 1:
        raise ClientError("give the request one way: --method M --url U [--authorization A --dpop P], "
                          "--curl '...', or - (a raw HTTP request on stdin)"
                          + (f"; got {' and '.join(forms)}" if forms else ""))
    if args.curl is not None:
        request = from_curl(args.curl)
    elif args.stdin is not None:
        request = from_http(sys.stdin.read(), scheme=args.scheme)
    else:
        if not (args.method and args.url):
            raise ClientError("--method and --url go together")
        if sum(v == "-" for v in (*args.authorization, *args.dpop)) > 1:
            raise ClientError("only one value can be read from stdin (-)")
        return from_flags(args.method, args.url, authorization=[_value(a, "Authorization") for a in args.authorization],
                          dpop=[_value(p, "DPoP proof") for p in args.dpop], cert=args.cert, headers=args.header)
    if args.authorization or args.dpop or args.header:
        raise ClientError("--authorization, --dpop and --header go with --method/--url; write them into the "
                          "curl command line or the raw request instead")
    if args.cert:
        from tokenguard.client.certs import load_certificate

        request.cert = load_certificate(args.cert)
    return request


def run(args: argparse.Namespace) -> int:
    request = read_request(args)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise ClientError(f"the config is not valid: {exc}".replace("\n", "; ")) from None
    result = explain(config, request, jwks_file=args.jwks)
    if args.json:
        print(json.dumps(as_json(result), indent=2, ensure_ascii=False, default=str))
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                            and not os.environ.get("NO_COLOR"))
        print(as_text(result, colour))
    return EXIT_ALLOW if result.answer.allow else EXIT_DENY
