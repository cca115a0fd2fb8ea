"""``tokenguard conformance init``: the tokenguard configuration the suite's cases assume.

The same pieces make the pre-flight's advice (each problem quotes the section that fixes it), so
what ``init`` prints and what the pre-flight asks for cannot drift apart. The output is plain TOML
built by hand (``tomllib`` only reads); a test parses it with tokenguard's own config loader.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

DEFAULT_ISSUER = "http://127.0.0.1:9400"
DEFAULT_AUDIENCE = "https://api.test"
DEFAULT_ALGS = "ES256 PS256 EdDSA"
DEFAULT_WINDOW = "60:15"
DEFAULT_LEEWAY = 60
DEFAULT_RESOURCE = "https://api.test/resource"
DEFAULT_WRITE = "https://api.test/write"
DEFAULT_NONCE = "https://api.test/nonce"
DEFAULT_LISTEN = "127.0.0.1:8080"
#: The suite's fixed introspection credentials: test fixtures, not secrets (docs/conformance.md).
DEFAULT_CLIENT_ID = "conformance"
DEFAULT_CLIENT_SECRET = "conformance-secret"


def _q(value: str) -> str:
    """A TOML basic string (JSON string syntax is a subset of it for printable text)."""
    return json.dumps(value)


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _path(url: str) -> str:
    return urllib.parse.urlsplit(url).path or "/"


@dataclass(frozen=True)
class Fixture:
    """What the suite will assume about the verifier (its command-line options)."""

    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    algs: str = DEFAULT_ALGS
    iat_window: str = DEFAULT_WINDOW
    leeway: int = DEFAULT_LEEWAY
    resource: str = DEFAULT_RESOURCE
    write_resource: str = DEFAULT_WRITE
    nonce_resource: str | None = DEFAULT_NONCE
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    cert_header: str = "X-SSL-Client-Cert"
    cert_format: str = "escaped-pem"

    def window(self) -> tuple[int, int]:
        past, _, future = self.iat_window.partition(":")
        return abs(int(past)), int(future or 0)

    # ---- the sections, each usable alone in a pre-flight message
    def issuer_toml(self) -> str:
        # Never echo an operator's own secret: only the suite's public fixture value is written out.
        secret = (_q(self.client_secret) if self.client_secret == DEFAULT_CLIENT_SECRET
                  else '"<the value of --introspection-client-secret>"')
        return (f"[[issuer]]\nissuer = {_q(self.issuer)}\n"
                f"introspection_client_id = {_q(self.client_id)}\n"
                f"introspection_client_secret = {secret}\n")

    def token_toml(self) -> str:
        return f"[token]\naudience = {_list([self.audience])}\nleeway = {self.leeway}\n"

    def dpop_toml(self) -> str:
        past, future = self.window()
        return f"[dpop]\nalgs = {_list(self.algs.split())}\niat_past = {past}\niat_future = {future}\n"

    def mtls_toml(self) -> str:
        return f"[mtls]\ncert_header = {_q(self.cert_header)}\ncert_format = {_q(self.cert_format)}\n"

    def route_toml(self, which: str) -> str:
        if which == "read":
            return (f'[[route]]\nname = "conformance-read"\npath = {_q(_path(self.resource))}\n'
                    'methods = ["GET"]\nscopes = ["read"]\nbinding = "any"\n')
        if which == "write":
            return (f'[[route]]\nname = "conformance-write"\npath = {_q(_path(self.write_resource))}\n'
                    'methods = ["POST"]\nscopes = ["write"]\nbinding = "any"\n')
        assert self.nonce_resource
        return (f'[[route]]\nname = "conformance-nonce"\npath = {_q(_path(self.nonce_resource))}\n'
                'binding = "any"\ndpop_nonce = true\n')

    def routes_toml(self) -> str:
        kinds = ["read", "write"] + (["nonce"] if self.nonce_resource else [])
        return "\n".join(self.route_toml(k) for k in kinds)

    def run_command(self, verifier: str) -> str:
        """The ``tokenguard conformance`` command that matches this fixture (auth_request mode)."""
        parts = [f"tokenguard conformance --verifier {verifier} --issuer {self.issuer}"]
        defaults = Fixture()
        for flag, value, default in (("--audience", self.audience, defaults.audience),
                                     ("--algs", self.algs, defaults.algs),
                                     ("--iat-window", self.iat_window, defaults.iat_window),
                                     ("--leeway", str(self.leeway), str(defaults.leeway)),
                                     ("--resource", self.resource, defaults.resource),
                                     ("--write-resource", self.write_resource, defaults.write_resource)):
            if value != default:
                parts.append(f"{flag} {_q(value) if ' ' in value else value}")
        if self.nonce_resource:
            parts.append(f"--nonce-resource {self.nonce_resource}")
        return " \\\n#       ".join(parts)


def render(fx: Fixture, listen: str = DEFAULT_LISTEN) -> str:
    """A complete, valid tokenguard config for running the suite against it (auth_request mode)."""
    verifier = f"http://{listen}/auth"
    return f"""\
# tokenguard configuration for its conformance suite (docs/conformance.md), made by
# `tokenguard conformance init`. It trusts the suite's own issuer and sets the routes, DPoP
# algorithms and time window the cases assume (docs/conformance-cases.md, Notation).
#
#   tokenguard serve --config THIS_FILE
#   {fx.run_command(verifier)}
#
# The suite serves the issuer itself while it runs; nothing needs to listen there beforehand.
# The introspection credentials are the suite's fixed test values, not secrets.

[server]
listen = {_q(listen)}
mode = "auth_request"
# trusted_proxies keeps its default (loopback): the suite plays nginx from 127.0.0.1.

{fx.token_toml()}
{fx.issuer_toml()}
{fx.dpop_toml()}
{fx.mtls_toml()}
[replay]
store = "embedded"

{fx.routes_toml()}"""
