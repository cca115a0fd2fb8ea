"""The ``tokenguard`` command: keys, proofs, tokens, a DPoP-aware ``curl``, and the servers.

Each verb is a thin face over :mod:`tokenguard.client` (the HTTP-client side), :mod:`tokenguard.core.dpop`
and :mod:`tokenguard.core.jwk`. ``serve``, ``check-config`` and ``conformance`` hand over to their modules,
imported only when used. Exit codes: 0 success; 1 the server or check said no (non-2xx, token
endpoint error, invalid config); 2 could not do it (bad arguments, unreadable file, bad key, network).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tokenguard import __version__
from tokenguard.client.authorization import fetch_token
from tokenguard.client.errors import ClientError
from tokenguard.client.http import DpopClient, Verify, auth_request_headers
from tokenguard.client.keys import (
    KEY_ALGS,
    generate_jwk,
    jwk_from_pem,
    load_private_jwk,
    parse_jwk,
    public_key_thumbprint,
    read_text,
    write_private_jwk,
)
from tokenguard.client.tokens import check_http_url, decode_proof, expiry_warning, read_token, token_cnf
from tokenguard.core.jwk import thumbprint

EXIT_OK, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2
TOKEN_ENV = "TOKENGUARD_TOKEN"
SECRET_ENV = "TOKENGUARD_CLIENT_SECRET"


class CLIError(ClientError):
    """A usage problem found after parsing (exit 2)."""


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _print_json(value: Any) -> None:
    _out(json.dumps(value, indent=2, sort_keys=False))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


# --------------------------------------------------------------------------------------- keygen


def cmd_keygen(args: argparse.Namespace) -> int:
    """Make a private JWK (or convert a PEM private key); print its RFC 7638 thumbprint."""
    if args.from_pem:
        jwk = jwk_from_pem(read_text(args.from_pem, "PEM key"), args.from_pem, args.alg)
    else:
        jwk = generate_jwk(args.alg or "ES256", rsa_bits=args.rsa_bits)
    jkt, alg = jwk["kid"], jwk["alg"]
    what = f"the {alg} private key from {args.from_pem}" if args.from_pem else f"a new {alg} private key"
    if args.out:
        write_private_jwk(args.out, jwk, force=args.force)
        if args.json:
            _print_json({"alg": alg, "kid": jkt, "jkt": jkt, "out": args.out})
        else:
            _err(f"wrote {what} to {args.out} (mode 0600); its RFC 7638 thumbprint (jkt):")
            _out(jkt)
        return EXIT_OK
    if args.json:
        _print_json({"alg": alg, "kid": jkt, "jkt": jkt, "jwk": jwk})
    else:
        _out(json.dumps(jwk, indent=2))
        _err(f"jkt: {jkt}   (this is a PRIVATE key: prefer --out FILE, which is written with mode 0600)")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- proof


def cmd_proof(args: argparse.Namespace) -> int:
    """Print one DPoP proof JWT for METHOD URL."""
    key = load_private_jwk(args.key)
    check_http_url(args.url)
    token = _token_arg(args.token, required=False)
    access_token = token[0] if token else None
    proof = DpopClient(key).proof(args.method.upper(), args.url, access_token=access_token, nonce=args.nonce)
    if args.json:
        header, claims = decode_proof(proof)
        _print_json({"proof": proof, "header": header, "claims": claims})
    else:
        _out(proof)
    return EXIT_OK


def _token_arg(value: str | None, *, required: bool) -> tuple[str, str | None] | None:
    """``--token`` (literal, ``@file``, ``-``) or ``$TOKENGUARD_TOKEN``."""
    if value is None:
        value = os.environ.get(TOKEN_ENV) or None
    if value is None:
        if required:
            raise CLIError(f"no access token: pass --token T, --token @file, --token - (stdin) or set {TOKEN_ENV}")
        return None
    return read_token(value)


# ---------------------------------------------------------------------------------------- token


def _verify_arg(args: argparse.Namespace) -> Verify:
    if getattr(args, "insecure", False):
        return False
    cacert = getattr(args, "cacert", None)
    if cacert:
        if not Path(cacert).is_file():
            raise CLIError(f"CA file not found: {cacert}")
        return str(cacert)
    return True


def _cert_arg(args: argparse.Namespace) -> str | tuple[str, str] | None:
    if args.cert_key and not args.cert:
        raise CLIError("--cert-key needs --cert")
    if not args.cert:
        return None
    for path in (args.cert, args.cert_key):
        if path and not Path(path).is_file():
            raise CLIError(f"certificate file not found: {path}")
    return (args.cert, args.cert_key) if args.cert_key else args.cert


def _secret_arg(args: argparse.Namespace) -> str | None:
    if args.client_secret is not None and args.client_secret_file is not None:
        raise CLIError("use either --client-secret or --client-secret-file, not both")
    if args.client_secret_file is not None:
        secret = read_text(args.client_secret_file, "client secret").strip()
        if not secret:
            raise CLIError(f"client secret file {args.client_secret_file} is empty")
        return secret
    if args.client_secret is not None:
        return str(args.client_secret)
    return os.environ.get(SECRET_ENV) or None


def _proof_printer(verbose: bool) -> Callable[[str], None] | None:
    if not verbose:
        return None

    def show(proof: str) -> None:
        header, claims = decode_proof(proof)
        note = " (with the server's nonce)" if "nonce" in claims else ""
        _err(f"* DPoP proof{note}, signature not shown")
        _err(f"*   header: {_compact(header)}")
        _err(f"*   claims: {_compact(claims)}")

    return show


def cmd_token(args: argparse.Namespace) -> int:
    """Client credentials grant; print the token response JSON."""
    key = load_private_jwk(args.dpop_key) if args.dpop_key else None
    result = fetch_token(args.issuer, args.client_id, client_secret=_secret_arg(args), dpop_key=key,
                         cert=_cert_arg(args), scope=args.scope, resources=args.resource or (),
                         auth_method=args.auth_method, verify=_verify_arg(args), timeout=args.timeout,
                         on_proof=_proof_printer(args.verbose))
    if args.verbose:
        _err(f"* token endpoint: {result.endpoint}" + ("  (retried once with a DPoP nonce)" if result.nonce_retry
                                                        else ""))
        if key is not None:
            _err(f"* requested binding to jkt {public_key_thumbprint(key)}")
    _print_json(result.response)
    return EXIT_OK


# ----------------------------------------------------------------------------------------- call


def _header_args(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise CLIError(f"bad header {item!r}: write it as -H 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def _data_arg(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "-" or value.startswith("@"):
        return read_text(value, "data")
    return value


def _choose_scheme(args: argparse.Namespace, token: str, token_type: str | None,
                   key: dict[str, Any] | None) -> str:
    """``DPoP`` for a DPoP-bound token, ``Bearer`` for an unbound one; the flags override."""
    if args.bearer:
        return "Bearer"
    cnf = token_cnf(token)
    jkt = cnf.get("jkt") if cnf else None
    if args.dpop or jkt is not None or (token_type or "").lower() == "dpop":
        scheme = "DPoP"
    elif cnf is not None or (token_type or "").lower() == "bearer":
        scheme = "Bearer"  # a JWT without cnf.jkt, or a token response that says Bearer
    else:
        scheme = "DPoP" if key is not None else "Bearer"  # opaque: trust the caller's --key
    if scheme == "DPoP" and key is None:
        raise CLIError("this token is DPoP-bound: pass --key with the private key it is bound to "
                       "(or --bearer to send it as a bearer token anyway)")
    if scheme == "DPoP" and isinstance(jkt, str) and key is not None and jkt != public_key_thumbprint(key):
        _err(f"warning: the token is bound to jkt {jkt}, but --key has jkt {public_key_thumbprint(key)}; "
             "the server will refuse it")
    return scheme


def cmd_call(args: argparse.Namespace) -> int:
    """Send one request with a fresh proof; print status, headers and body."""
    check_http_url(args.url)
    if [args.data, args.token, args.proof].count("-") > 1:
        raise CLIError("only one of --token, --data and --proof can read stdin (-)")
    token, token_type = _token_arg(args.token, required=True) or ("", None)
    if (expired := expiry_warning(token)) is not None:
        _err(f"warning: {expired}")
    key = load_private_jwk(args.key) if args.key else None
    scheme = _choose_scheme(args, token, token_type, key)
    method = args.method.upper()
    headers = _header_args(args.header or [])
    data = _data_arg(args.data)
    if data is not None and not any(h.lower() == "content-type" for h in headers):
        headers["Content-Type"] = "application/json" if _is_json(data) else "application/x-www-form-urlencoded"
    client = DpopClient(key if scheme == "DPoP" else None, verify=_verify_arg(args), cert=_cert_arg(args),
                        timeout=args.timeout, on_proof=_proof_printer(args.verbose))
    if args.auth_request:
        check_http_url(args.auth_request, "--auth-request")
    if args.verbose:
        if args.auth_request:
            _err(f"> GET {args.auth_request}   (auth_request sub-request describing {method} {args.url})")
            for name, value in auth_request_headers(method, args.url).items():
                _err(f"> {name}: {value}")
        else:
            _err(f"> {method} {args.url}")
        _err(f"> Authorization: {scheme} [access token, {len(token)} characters, not shown]")
        for name, value in headers.items():
            _err(f"> {name}: {value}")
    proof = (_data_arg(args.proof) or "").strip() or None
    if proof is not None and scheme != "DPoP":
        raise CLIError("--proof goes with the DPoP scheme (a DPoP-bound token, or --dpop)")
    exchange = client.request(method, args.url, access_token=token, scheme=scheme, headers=headers, data=data,
                              auth_request=args.auth_request, proof=proof)
    response = exchange.response
    if args.verbose and exchange.nonce_retry:
        _err("* the first attempt was answered 401 with a DPoP-Nonce; retried once with that nonce")
    if args.json:
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text
        _print_json({"status": response.status_code, "headers": dict(response.headers), "body": body,
                     "nonce_retry": exchange.nonce_retry})
    else:
        _out(f"HTTP {response.status_code} {response.reason or ''}".rstrip())
        for name, value in response.headers.items():
            _out(f"{name}: {value}")
        _out()
        if response.content:
            sys.stdout.write(response.text)
            if not response.text.endswith("\n"):
                _out()
    return EXIT_OK if 200 <= response.status_code < 300 else EXIT_REFUSED


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------- thumbprint


def cmd_thumbprint(args: argparse.Namespace) -> int:
    """RFC 7638 thumbprint of a JWK, or RFC 8705 x5t#S256 of a certificate."""
    if args.jwk:
        jwk = parse_jwk(read_text(args.jwk, "JWK"), args.jwk, private=False)
        name, value = "jkt", thumbprint(jwk)  # RFC 7638 §3.2: required members only, private ones never
    else:
        name, value = "x5t#S256", _cert_thumbprint(args.cert)
    if args.json:
        _print_json({name: value})
    else:
        _out(value)
    return EXIT_OK


def _cert_thumbprint(path: str) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    from tokenguard.client.certs import load_certificate
    from tokenguard.core.bindings.mtls import x5t_s256

    return x5t_s256(load_certificate(path).public_bytes(Encoding.DER))


# --------------------------------------------------------------------------------- check-config


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file with :func:`tokenguard.settings.load_config`: every problem at once.

    Exit 0 valid, 1 invalid (each problem as ``FILE: key: problem``), 2 the file cannot be read.
    """
    config = _import("tokenguard.settings", "check-config")
    unreadable = _unreadable(Path(args.file))
    if unreadable is not None:
        problems = [{"source": args.file, "key": None, "problem": unreadable}]
        code = EXIT_ERROR
    else:
        try:
            config.load_config(args.file)
        except config.ConfigError as exc:
            problems = [{"source": p.source, "key": None if p.key == "-" else p.key, "problem": p.problem}
                        for p in exc.problems]
            code = EXIT_REFUSED
        else:
            problems, code = [], EXIT_OK
    if args.json:
        _print_json({"file": args.file, "ok": not problems, "problems": problems})
    elif problems:
        for problem in problems:
            where = f"{problem['source']}: {problem['key']}" if problem["key"] else problem["source"]
            _err(f"{where}: {problem['problem']}")
    else:
        _out(f"{args.file}: ok")
    return code


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a directory, not a file"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


# ---------------------------------------------------------------------------- serve, conformance


def _import(module: str, verb: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CLIError(f"'tokenguard {verb}' is not available in this installation: "
                       f"cannot import {module} ({exc})") from None


#: verb -> module with ``add_arguments(parser)`` and ``run(args) -> int``.
DELEGATED = {"serve": "tokenguard.serving", "explain": "tokenguard.cli.explain",
             "conformance": "tokenguard.conformance"}
_DELEGATED_HELP = {
    "serve": "run the verifier (auth endpoint for nginx / Caddy / Traefik / Envoy)",
    "explain": "show every check of one request (expected and got, RFC section) and what /auth would answer",
    "conformance": "run the black-box conformance suite against a verifier and an issuer",
}


def _delegate(module: Any, parser: argparse.ArgumentParser) -> None:
    """Let the verb's module add its options and run it (only for the verb that runs: it may import Flask)."""
    if module is None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def _load_delegate(verb: str) -> Any:
    """The module behind a delegated verb, with ``add_arguments`` and ``run``; one clear error if absent."""
    module = _import(DELEGATED[verb], verb)
    if not callable(getattr(module, "add_arguments", None)) or not callable(getattr(module, "run", None)):
        raise CLIError(f"'tokenguard {verb}' is not available in this installation: "
                       f"{DELEGATED[verb]} lacks add_arguments/run")
    return module


# ------------------------------------------------------------------------------------- argparse

_DESCRIPTION = """\
tokenguard verifies sender-constrained OAuth access tokens (DPoP RFC 9449, mTLS RFC 8705) for
reverse proxies. These commands are also the client side: make a key, get a DPoP-bound token,
and call an API with a fresh proof per request."""

_EPILOG = """\
first steps (with `make run` services, or `idp-mock serve` and `tokenguard serve`):
  tokenguard keygen --alg ES256 --out key.jwk
  tokenguard token --issuer http://127.0.0.1:9000 --client-id CLIENT \\
      --client-secret-file secret.txt --dpop-key key.jwk > token.json
  tokenguard call GET https://127.0.0.1:8000/api --key key.jwk --token @token.json --cacert ca.pem -v
  tokenguard explain --config tokenguard.toml --curl 'curl -H "Authorization: DPoP ..." ...'   # why refused?

`tokenguard VERB --help` explains each verb. Exit codes: 0 success; 1 the server or the check said no
(non-2xx response, token endpoint error, invalid config); 2 could not run (bad arguments, unreadable
file, bad key, network)."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _add_tls_options(parser: argparse.ArgumentParser, *, cert_help: str) -> None:
    group = parser.add_argument_group("TLS")
    group.add_argument("--cert", metavar="C", help=cert_help)
    group.add_argument("--cert-key", metavar="CK", help="private key (PEM) of --cert, if not in the same file")
    trust = group.add_mutually_exclusive_group()
    trust.add_argument("--cacert", metavar="F", help="CA bundle (PEM) to verify the server's certificate")
    trust.add_argument("--insecure", "-k", action="store_true",
                       help="do not verify the server's certificate (testing only)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="network timeout (default: %(default)s)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and exit 2), pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None, delegate: Any = None) -> argparse.ArgumentParser:
    """The argument parser; ``delegate`` is the module of ``command`` when that verb is delegated."""
    parser = _Parser(prog="tokenguard", description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"tokenguard {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="VERB", title="verbs")

    def verb(name: str, help_text: str, epilog: str, func: Callable[[argparse.Namespace], int]
             ) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               epilog=epilog, formatter_class=_Formatter)
        sub.set_defaults(func=func)
        return sub

    p = verb("keygen", "make a new private key (JWK) for DPoP and print its thumbprint", """\
The key's kid is its RFC 7638 thumbprint: the `jkt` a DPoP-bound token will carry in cnf.jkt.
With --out the key is written readable by you only (0600) and only the thumbprint is printed;
without it the private JWK goes to stdout (careful where you redirect it).

examples:
  tokenguard keygen --out key.jwk                 # ES256 (P-256), the usual choice
  tokenguard keygen --alg Ed25519 --out ed.jwk    # RFC 9864's name; --alg EdDSA for older servers
  JKT=$(tokenguard keygen --alg PS256 --out rsa.jwk)
  tokenguard keygen --from-pem client-key.pem --out key.jwk   # an existing key, as a JWK""", cmd_keygen)
    p.add_argument("--alg", choices=KEY_ALGS, help="signature algorithm (default: ES256; with --from-pem, the "
                                                   "key's usual one)")
    p.add_argument("--from-pem", metavar="PEM", help="convert this PEM private key (EC P-256, Ed25519, RSA) "
                                                     "instead of making a new one")
    p.add_argument("--out", metavar="FILE", help="write the private JWK here (mode 0600)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--rsa-bits", type=int, default=2048, choices=(2048, 3072, 4096),
                   help="RSA modulus size for RS256/PS256 (default: 2048)")
    p.add_argument("--json", action="store_true", help="print alg, kid, jkt (and the key if no --out) as JSON")

    p = verb("proof", "print one DPoP proof JWT for a request", """\
The proof is RFC 9449 §4.2: typ dpop+jwt, the public key in the header, jti/htm/htu/iat claims,
`ath` when --token is given, `nonce` when --nonce is. htu is the URL without query and fragment.
The method is upper-cased, as HTTP clients send it. A proof is single-use: make one per request.

examples:
  tokenguard proof --key key.jwk --method GET --url https://api.example/orders
  curl -H "Authorization: DPoP $AT" -H "DPoP: $(tokenguard proof --key key.jwk --method GET \\
       --url https://api.example/orders --token "$AT")" https://api.example/orders""", cmd_proof)
    p.add_argument("--key", "-K", required=True, metavar="K", help="private JWK file (from keygen), - for stdin")
    p.add_argument("--method", "-m", required=True, metavar="M", help="HTTP method of the request (htm)")
    p.add_argument("--url", "-u", required=True, metavar="U", help="absolute URL of the request (htu)")
    p.add_argument("--token", "-t", metavar="T",
                   help=f"access token to bind (ath): the token, @file, or - for stdin; default ${TOKEN_ENV}")
    p.add_argument("--nonce", "-n", metavar="N", help="server-provided nonce (from a DPoP-Nonce header)")
    p.add_argument("--json", action="store_true", help="print the proof with its decoded header and claims")

    p = verb("token", "get an access token by client credentials and print the token response", f"""\
The token endpoint is found from the issuer's RFC 8414 metadata. With --dpop-key the token is
DPoP-bound (RFC 9449 §5; a `use_dpop_nonce` answer is retried once with the server's nonce). With
--cert the request goes over mutual TLS to the metadata's mtls_endpoint_aliases and the token is
certificate-bound (RFC 8705); with --cert and no secret the client authenticates by its certificate.

The client secret: prefer --client-secret-file FILE or ${SECRET_ENV}. A secret given as
--client-secret is visible to other users of this machine in `ps` and lands in shell history.

examples:
  tokenguard token --issuer http://127.0.0.1:9000 --client-id CLIENT --client-secret-file s.txt \\
      --dpop-key key.jwk --scope read > token.json
  {SECRET_ENV}=... tokenguard token --issuer https://as.example --client-id CLIENT --dpop-key key.jwk
  tokenguard token --issuer https://as.example --client-id CLIENT --cert client.pem --cert-key client.key""",
                 cmd_token)
    p.add_argument("--issuer", required=True, metavar="URL", help="the authorization server's issuer identifier")
    p.add_argument("--client-id", required=True, metavar="ID")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--client-secret", metavar="S", help=f"client secret (visible in ps; see below), "
                        f"default ${SECRET_ENV}")
    secret.add_argument("--client-secret-file", metavar="FILE", help="read the client secret from FILE (- stdin)")
    p.add_argument("--auth-method", choices=("client_secret_basic", "client_secret_post"),
                   help="how to send the secret (default: basic, unless the server only supports post)")
    p.add_argument("--dpop-key", metavar="K", help="private JWK to bind the token to (DPoP)")
    p.add_argument("--scope", metavar="S", help="space-separated scopes to request")
    p.add_argument("--resource", action="append", metavar="URI", help="RFC 8707 resource indicator (repeatable)")
    p.add_argument("--verbose", "-v", action="store_true", help="show the endpoint and the proofs' header and claims")
    _add_tls_options(p, cert_help="client certificate (PEM) for mutual TLS: certificate-bound token")

    p = verb("call", "send an HTTP request with a fresh DPoP proof (a DPoP-aware curl)", f"""\
Each request gets a new proof with `ath` (the token's hash) and htu = the URL without query and
fragment. If the server answers 401 asking for a nonce (WWW-Authenticate DPoP error="use_dpop_nonce"
or a DPoP-Nonce header) the request is retried once with that nonce. A token with cnf.jkt is sent
as `Authorization: DPoP`, an unbound one as `Bearer`; --bearer / --dpop force the scheme.
--token also takes the JSON printed by `tokenguard token` (@token.json).
Prints status, headers and body; exits 0 for 2xx, 1 otherwise. -v shows, on stderr, each proof's
decoded header and claims (never its signature, never the token).

examples:
  tokenguard call GET https://127.0.0.1:8000/api --key key.jwk --token @token.json --cacert ca.pem
  tokenguard call POST https://api.example/orders --key key.jwk --token - --data '{{"item": 1}}' < at.txt
  {TOKEN_ENV}=$AT tokenguard call GET https://api.example/me -H 'Accept: application/json' -v --key key.jwk
  tokenguard call GET https://api.example/me --token @token.json --bearer    # downgrade: must be refused
  tokenguard call GET https://localhost:8000/hello --key key.jwk --token @token.json \
      --auth-request http://127.0.0.1:8080/auth    # ask tokenguard directly, as nginx would""",
                 cmd_call)
    p.add_argument("method", metavar="METHOD", help="HTTP method (GET, POST, ...)")
    p.add_argument("url", metavar="URL", help="absolute http(s) URL")
    p.add_argument("--key", "-K", metavar="K", help="private JWK the token is bound to")
    p.add_argument("--token", "-t", metavar="T",
                   help=f"access token: the token, @file (token or token-response JSON), - for stdin; "
                        f"default ${TOKEN_ENV}")
    p.add_argument("--data", "-d", metavar="DATA", help="request body: text, @file, or - for stdin")
    p.add_argument("--header", "-H", action="append", metavar="'Name: value'", help="extra header (repeatable)")
    scheme = p.add_mutually_exclusive_group()
    scheme.add_argument("--bearer", action="store_true", help="send Authorization: Bearer and no proof")
    scheme.add_argument("--dpop", action="store_true", help="send Authorization: DPoP and a proof")
    p.add_argument("--proof", metavar="P", help="send this exact DPoP proof (text, @file or -) instead of a fresh "
                                                "one, e.g. to see a replay refused; no nonce retry")
    p.add_argument("--auth-request", metavar="AUTH_URL",
                   help="send to tokenguard's auth endpoint (e.g. http://127.0.0.1:8080/auth) as nginx "
                        "auth_request would, describing METHOD URL; the proof is for METHOD URL")
    p.add_argument("--verbose", "-v", action="store_true", help="show request line and proofs on stderr")
    p.add_argument("--json", action="store_true", help="print status, headers and body as JSON")
    _add_tls_options(p, cert_help="client certificate (PEM) for mutual TLS (certificate-bound tokens)")

    p = verb("thumbprint", "print a key's RFC 7638 thumbprint (jkt) or a certificate's x5t#S256", """\
--jwk takes a public or private JWK (only public members enter the thumbprint); --cert takes a
certificate in PEM or DER and prints the RFC 8705 §3.1 x5t#S256 a certificate-bound token carries.

examples:
  tokenguard thumbprint --jwk key.jwk
  tokenguard thumbprint --cert client.pem --json""", cmd_thumbprint)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--jwk", metavar="F", help="JWK file (- for stdin)")
    which.add_argument("--cert", metavar="F", help="certificate file, PEM or DER (- for stdin)")
    p.add_argument("--json", action="store_true", help='print {"jkt": ...} or {"x5t#S256": ...}')

    p = verb("check-config", "validate a tokenguard config file", """\
Prints "FILE: ok" and exits 0, or every problem, one line each as "FILE: key: what is wrong", and
exits 1; exits 2 when the file cannot be read at all. Environment overrides
(TOKENGUARD_<SECTION>_<KEY>) are applied, as `serve` would.

examples:
  tokenguard check-config /etc/tokenguard/tokenguard.toml
  tokenguard check-config tokenguard.toml --json    # {"file", "ok", "problems": [{"source", "key", "problem"}]}""",
             cmd_check_config)
    p.add_argument("file", metavar="FILE", help="TOML config file")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    for name in DELEGATED:
        help_text = _DELEGATED_HELP[name]
        sub = verbs.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                               formatter_class=_Formatter)
        _delegate(delegate if command == name else None, sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The verb in ``argv`` (the first word that is not an option); top-level options take no values."""
    for word in argv:
        if not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tokenguard`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:
        delegate = _load_delegate(command) if command in DELEGATED else None
    except ClientError as exc:
        _err(f"tokenguard {command}: error: {exc}")
        return exc.exit_code
    parser = build_parser(command, delegate)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.func(args))
    except ClientError as exc:
        _err(f"tokenguard {command}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err(f"tokenguard {command}: interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug, not a user error: still one line unless asked for details
        if os.environ.get("TOKENGUARD_DEBUG"):
            raise
        _err(f"tokenguard {command}: unexpected error: {type(exc).__name__}: {str(exc)[:200]} "
             "(set TOKENGUARD_DEBUG=1 for a traceback)")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
