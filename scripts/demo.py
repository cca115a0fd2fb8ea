"""The `make run` walk-through: a DPoP-bound token, an allowed call, a refused replay, a refused downgrade.

Run after idp_mock and tokenguard are up (``scripts/run_demo.py`` starts them)::

    python scripts/demo.py --idp http://127.0.0.1:9000 --verifier http://127.0.0.1:8080 \\
        [--proxy https://127.0.0.1:8000 --cacert server.crt] [--audience https://localhost:8000]

With ``--proxy`` (and the proxy answering) the protected route is called through nginx; otherwise
tokenguard's ``/auth`` is asked directly, described the way nginx's ``auth_request`` would describe
the request. Each step prints the equivalent ``tokenguard`` command. Exit status 0 when every step
ended as it should (allowed, replay refused, downgrade refused).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from tokenguard.client.authorization import fetch_token  # noqa: E402 - after the path tweak
from tokenguard.client.errors import ClientError  # noqa: E402 - after the path tweak
from tokenguard.client.http import DpopClient, Exchange, Verify, challenge_error  # noqa: E402 - after the path tweak
from tokenguard.client.keys import generate_jwk, write_private_jwk  # noqa: E402 - after the path tweak
from tokenguard.client.tokens import token_cnf  # noqa: E402 - after the path tweak
from tokenguard.core.jws import parse_compact  # noqa: E402

DEMO_CLIENT, DEMO_SECRET = "dpop1", "dpop1-secret"  # idp_mock's built-in DPoP client (idp_mock/README.md)
BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def _colour(enabled: bool) -> None:
    global BOLD, DIM, GREEN, RED, RESET
    if not enabled:
        BOLD = DIM = GREEN = RED = RESET = ""


def step(number: int, title: str) -> None:
    print(f"\n{BOLD}Step {number}/5: {title}{RESET}", flush=True)


def command(text: str) -> None:
    print(f"{DIM}  $ {text}{RESET}")


def say(text: str = "") -> None:
    print(f"  {text}" if text else "", flush=True)


def verdict(ok: bool, text: str) -> None:
    print(f"  {GREEN + 'OK' if ok else RED + 'UNEXPECTED'}{RESET}  {text}", flush=True)


def reachable(url: str) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def show_response(exchange: Exchange, *, body: bool = True) -> None:
    response = exchange.response
    say(f"-> HTTP {response.status_code} {response.reason or ''}".rstrip())
    if exchange.nonce_retry:
        say("   (the first attempt was answered 401 use_dpop_nonce; retried once with the server's nonce)")
    for name, value in response.headers.items():
        if name.lower().startswith("x-auth-") or name.lower() in ("www-authenticate", "dpop-nonce"):
            say(f"   {name}: {value}")
    if body and response.content and response.status_code == 200:
        text = response.text.strip()
        say("   body: " + text.replace("\n", "\n         "))


def refusal(exchange: Exchange) -> str:
    """The reason code and the challenge's error, e.g. ``dpop_replay / invalid_dpop_proof``."""
    response = exchange.response
    reason = response.headers.get("X-Auth-Error") or "(no X-Auth-Error)"
    error = challenge_error(response) or "(no error in WWW-Authenticate)"
    return f"X-Auth-Error: {reason}; WWW-Authenticate error: {error}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idp", default="http://127.0.0.1:9000", help="issuer URL of idp_mock (default: %(default)s)")
    parser.add_argument("--verifier", default="http://127.0.0.1:8080",
                        help="tokenguard's base URL (default: %(default)s)")
    parser.add_argument("--proxy", help="nginx in front of the protected app, e.g. https://127.0.0.1:8000; "
                                        "used when it answers, else /auth is called directly")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--cacert", help="CA / server certificate that the proxy's TLS certificate chains to")
    trust.add_argument("--insecure", action="store_true", help="do not verify the proxy's TLS certificate")
    parser.add_argument("--audience", help="resource (RFC 8707) to request the token for; also the external "
                                           "URL when calling /auth directly (default: idp_mock's default audience)")
    parser.add_argument("--path", default="/hello", help="protected path to call (default: %(default)s)")
    parser.add_argument("--client-id", default=DEMO_CLIENT, help="client at idp_mock (default: %(default)s)")
    parser.add_argument("--client-secret-file", help="its secret (default: $TOKENGUARD_CLIENT_SECRET, or the "
                                                     "documented demo secret for dpop1)")
    parser.add_argument("--workdir", default=str(ROOT / ".run" / "demo"), help="where the demo key is written")
    parser.add_argument("--no-colour", "--no-color", action="store_true", help="plain output")
    return parser.parse_args(argv)


def client_secret(args: argparse.Namespace) -> str:
    if args.client_secret_file:
        return Path(args.client_secret_file).read_text(encoding="utf-8").strip()
    secret = os.environ.get("TOKENGUARD_CLIENT_SECRET")
    if secret:
        return secret
    if args.client_id == DEMO_CLIENT:
        return DEMO_SECRET
    raise ClientError(f"no secret for client {args.client_id}: pass --client-secret-file or set "
                      "TOKENGUARD_CLIENT_SECRET")


def run(args: argparse.Namespace) -> bool:
    """The five steps; True when each ended as it should."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = workdir / "key.jwk"
    token_file = workdir / "token.json"

    step(1, "generate a DPoP key pair (the client keeps the private half)")
    command(f"tokenguard keygen --alg ES256 --out {key_file} --force")
    key = generate_jwk("ES256")
    write_private_jwk(str(key_file), key, force=True)
    say(f"wrote {key_file} (mode 0600)")
    say(f"its RFC 7638 thumbprint, the 'jkt' the token will be bound to: {key['kid']}")

    step(2, f"get a DPoP-bound access token from idp_mock ({args.idp})")
    resource = ["--resource", args.audience] if args.audience else []
    command(f"tokenguard token --issuer {args.idp} --client-id {args.client_id} --client-secret-file SECRET "
            f"--dpop-key {key_file} {' '.join(resource)}".rstrip() + f" > {token_file}")
    result = fetch_token(args.idp, args.client_id, client_secret=client_secret(args), dpop_key=key,
                         resources=[args.audience] if args.audience else [])
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(result.response, handle, indent=2)
    token = result.response["access_token"]
    say(f"token_type: {result.response.get('token_type')}, expires_in: {result.response.get('expires_in')}s "
        f"(saved in {token_file})" + ("; the token endpoint asked for a DPoP nonce first" if result.nonce_retry
                                      else ""))
    try:
        claims = parse_compact(token).payload
        shown = {k: claims[k] for k in ("iss", "sub", "aud", "scope", "cnf") if k in claims}
        say(f"its claims (decoded, not the token): {json.dumps(shown)}")
    except ValueError:
        say("the token is opaque (tokenguard will introspect it)")
    cnf = token_cnf(token) or {}
    bound = cnf.get("jkt") == key["kid"]
    verdict(bound, "cnf.jkt is our key's thumbprint: the token is useless without the private key")

    verify: Verify = False if args.insecure else (args.cacert or True)
    auth_url = args.verifier.rstrip("/") + "/auth"
    if args.proxy and reachable(args.proxy):
        url, via = args.proxy.rstrip("/") + args.path, None
        where = f"through nginx at {args.proxy} (which asks tokenguard's /auth before proxying)"
        how = f"tokenguard call GET {url} --key {key_file} --token @{token_file}" + (
            f" --cacert {args.cacert}" if args.cacert else " --insecure" if args.insecure else "")
    else:
        external = (args.audience or "https://localhost:8000").rstrip("/")
        url, via = external + args.path, auth_url
        reason = f"nothing answers at {args.proxy}" if args.proxy else "no --proxy given"
        where = (f"tokenguard's {auth_url} directly ({reason}), describing the request {url} "
                 "the way nginx's auth_request would (X-Original-Method/-URI, X-Forwarded-Proto/-Host/-Port)")
        how = f"tokenguard call GET {url} --key {key_file} --token @{token_file} --auth-request {auth_url}"
    client = DpopClient(key, verify=verify)

    step(3, "call the protected route with the token and a fresh DPoP proof")
    say(f"calling {where}")
    command(how)
    allowed = client.request("GET", url, access_token=token, auth_request=via)
    show_response(allowed)
    ok_allowed = allowed.response.status_code == 200
    verdict(ok_allowed, "allowed" if ok_allowed else f"expected 200; {refusal(allowed)}")

    step(4, "replay: send the very same request again, with the same DPoP proof")
    say("an attacker who copied the request off the wire has the token and a valid proof, but each proof's")
    say("jti may be used once (RFC 9449 §11.1), and a fresh proof needs the private key")
    proof_file = workdir / "used-proof.txt"
    fd = os.open(proof_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(allowed.proofs[-1] + "\n")
    command(how + f" --proof @{proof_file}")
    replay = client.request("GET", url, access_token=token, auth_request=via, proof=allowed.proofs[-1])
    show_response(replay, body=False)
    ok_replay = replay.response.status_code == 401
    verdict(ok_replay, f"refused: {refusal(replay)}" if ok_replay else "the replayed proof was accepted!")

    step(5, "downgrade: send the DPoP-bound token as a plain Bearer token, with no proof")
    command(how + " --bearer")
    downgrade = client.request("GET", url, access_token=token, scheme="Bearer", auth_request=via)
    show_response(downgrade, body=False)
    ok_downgrade = downgrade.response.status_code == 401
    verdict(ok_downgrade, f"refused: {refusal(downgrade)}" if ok_downgrade else "the downgrade was accepted!")

    all_ok = bound and ok_allowed and ok_replay and ok_downgrade
    print()
    if all_ok:
        say(f"{BOLD}All as expected:{RESET} a stolen DPoP-bound token (or a captured request) gets nowhere.")
    else:
        say(f"{RED}Something did not behave as expected; see the logs under .run/.{RESET}")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _colour(not args.no_colour and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    try:
        return 0 if run(args) else 1
    except ClientError as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
