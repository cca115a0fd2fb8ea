"""Differential test (issue 9): what tokenguard authorizes is exactly what the proxy forwards.

Real nginx and real Caddy with the SHIPPED configs, tokenguard on every engine in
:data:`tokenguard.serving.ENGINES`, and an echo upstream that records the method, host, path and query it
received. Every request of a hand-written corpus of hostile framings, and of hypothesis-generated variants
(fixed seed, bounded), is judged the same way:

* never a 5xx;
* allowed (the upstream got it): tokenguard logged exactly one ``allow`` and the method, host, path and
  route it decided are those of the request the upstream received (the path compared after RFC 3986
  normalisation, which tokenguard decides on);
* denied by tokenguard: a 401/403 with a ``WWW-Authenticate`` challenge, and nothing reached the upstream;
* refused by the proxy itself (tokenguard never asked): a 4xx, and nothing reached the upstream.

Some cases also pin the answer (e.g. the reproductions of the issue).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote

import harness
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenguard.core.dpop import create_proof
from tokenguard.core.policy import Policy, Route, RouteBinding
from tokenguard.core.uri import normalize_path
from tokenguard.serving import ENGINES

pytestmark = pytest.mark.integration

ROUTES = harness.INTEGRITY_ROUTES
#: The same routes as the core sees them: the route of the request the upstream received.
POLICY = Policy(routes=(Route(name="admin", path="/admin/*", scopes=("admin",)),
                        Route(name="mtls", path="/mtls/*", binding=RouteBinding.MTLS),
                        Route(name="dpop", path="/dpop/*", binding=RouteBinding.DPOP),
                        Route(name="catch-all", path="*")))
STACKS = [(proxy, engine) for proxy in ("nginx", "caddy") for engine in sorted(ENGINES)]


# ------------------------------------------------------------------------------------------- the stack


@dataclass
class Outcome:
    response: harness.Response
    decisions: list[dict[str, object]]
    upstream: list[dict[str, object]]


@dataclass
class Stack:
    proxy: str
    engine: str
    port: int
    issuer: harness.StubIssuer
    tls: harness.TLSMaterial
    upstream: harness.ThreadedServer
    log: harness.DecisionLog
    processes: list[harness.ManagedProcess] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    def send(self, data: bytes, cert: harness.ClientCert | None = None) -> Outcome:
        self.upstream.requests.clear()
        self.log.new()
        response = harness.raw_request(self.port, data, tls=self.tls, cert=cert)
        upstream = list(self.upstream.requests)
        decided = bool(upstream) or any(name.lower() == "x-auth-error" for name, _ in response.headers)
        # tokenguard answered (an allow reached the upstream, or its denial came back): its decision line
        # is on its way (log lines leave in batches, at most 50 ms late)
        return Outcome(response, self.log.new(expect=decided), upstream)


def _start_stack(tmp: Path, proxy: str, engine: str, tls: harness.TLSMaterial) -> Stack:
    if harness.require_binary(proxy) is None:
        pytest.skip(f"{proxy} is not installed (apt-get install {proxy})")
    issuer = harness.StubIssuer()
    upstream = harness.serve_in_thread(harness.EchoHandler)
    processes: list[harness.ManagedProcess] = []
    try:
        port = harness.free_port()
        extra = ('[mtls]\ncert_header = "X-Forwarded-Tls-Client-Cert"\ncert_format = "base64-der"\n'
                 if proxy == "caddy" else "")
        config = harness.tokenguard_config(tmp / "tokenguard.toml", port=port, state_dir=tmp / "state",
                                           issuer=issuer.issuer, extra=extra, routes=ROUTES)
        tokenguard = harness.start_tokenguard(config, port, tmp / "logs", env={"TOKENGUARD_SERVER_ENGINE": engine})
        processes.append(tokenguard)
        listen = harness.free_port()
        if proxy == "nginx":
            ports = harness.NginxPorts(listen, port, upstream.port, harness.free_port(), upstream.port)
            processes.append(harness.start_nginx(tmp / "nginx", ports, tls))
        else:
            caddy = harness.CaddyPorts(listen, port, upstream.port, harness.free_port())
            processes.append(harness.start_caddy(tmp / "caddy", caddy, tls))
    except BaseException:
        for process in reversed(processes):
            process.stop()
        upstream.close()
        issuer.close()
        raise
    return Stack(proxy, engine, listen, issuer, tls, upstream, harness.DecisionLog(tokenguard.log_path), processes)


@pytest.fixture(scope="module", params=STACKS, ids=[f"{p}-{e}" for p, e in STACKS])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          tls_material: harness.TLSMaterial) -> Iterator[Stack]:
    proxy, engine = request.param
    started = _start_stack(tmp_path_factory.mktemp(f"diff-{proxy}-{engine}"), proxy, engine, tls_material)
    yield started
    for process in reversed(started.processes):
        process.stop()
    started.upstream.close()
    started.issuer.close()


# ------------------------------------------------------------------------------------------- the judge


def received_host(record: dict[str, object]) -> str:
    values = harness.header_values(record, "Host")
    assert len(values) == 1, f"upstream got Host {values}"
    host = values[0].lower()
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def judge(stack: Stack, outcome: Outcome, what: str) -> str:
    """The differential rule every request must satisfy; returns "allowed", "denied" or "refused"."""
    response, decisions, upstream = outcome.response, outcome.decisions, outcome.upstream
    context = f"{stack.proxy}/{stack.engine} {what}: {response.status} {response.headers} {decisions} {upstream}"
    assert response.status < 500, context
    assert len(decisions) <= 1, context
    if upstream:
        assert len(upstream) == 1 and len(decisions) == 1 and decisions[0]["result"] == "allow", context
        decided, received = decisions[0], upstream[0]
        raw_path, _, query = str(received["target"]).partition("?")
        assert decided["method"] == received["method"], context
        assert decided["host"] == received_host(received), context
        assert decided["path"] == normalize_path(raw_path), context
        route = POLICY.route_for(str(received["method"]), received_host(received), normalize_path(raw_path))
        assert route is not None and decided["route"] == route.name, context
        # what the app is told: tokenguard's identity only, and no token in the query nobody checked
        assert harness.header_values(received, "X-Auth-Subject") == [decided["subject"]], context
        pairs = received["headers"]
        assert isinstance(pairs, list)
        assert not [k for k, _ in pairs if "_" in k and k.lower().replace("_", "-").startswith("x-auth-")], context
        names = [k.lower() for k, _ in parse_qsl(query.replace(";", "&"), keep_blank_values=True)]
        assert "access_token" not in names, context
        return "allowed"
    if decisions:
        assert decisions[0]["result"] != "allow", context
        assert response.status in (401, 403), context
        assert response.all("WWW-Authenticate"), context
        assert response.one("Cache-Control") == "no-store", context
        return "denied"
    # the proxy refused the framing itself, before asking tokenguard: its own page, never an engine's 4xx
    # relayed (Caddy passes a 431 from the engine on; nginx would turn it into 500)
    assert 400 <= response.status < 500, context
    assert refused_by_the_proxy(stack, response), context
    return "refused"


def refused_by_the_proxy(stack: Stack, response: harness.Response) -> bool:
    """nginx's own error pages name nginx; Go's and Caddy's own refusals are plain text or empty, while a
    serving engine's error page (relayed by Caddy) is HTML."""
    if stack.proxy == "nginx":
        return b"<center>nginx</center>" in response.body
    return not response.body.lstrip().startswith(b"<")


# ------------------------------------------------------------------------------------------ the corpus

Build = Callable[[Stack], tuple[bytes, "harness.ClientCert | None"]]


@dataclass(frozen=True)
class Case:
    """One hostile framing; ``allow`` pins the answer (None: the differential rule alone), ``reasons`` the
    acceptable X-Auth-Error values when tokenguard denied it."""

    name: str
    build: Build = field(repr=False)
    allow: bool | None = None
    reasons: tuple[str, ...] = ()


def request_bytes(method: str, target: str, host: str | None, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in headers]
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def bearer(stack: Stack, scope: str = "read", **claims: object) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {stack.issuer.token(scope=scope, **claims)}")]


def dpop(stack: Stack, htu: str, method: str = "GET", scope: str = "read",
         **claims: object) -> list[tuple[str, str]]:
    key = harness.dpop_key()
    token = stack.issuer.token(scope=scope, cnf={"jkt": str(key["jkt"])})
    proof = create_proof(key["jwk"], htm=method, htu=htu, access_token=token,  # type: ignore[arg-type]
                         extra_claims=claims or None)
    return [("Authorization", f"DPoP {token}"), ("DPoP", proof)]


def simple(name: str, target: str, creds: Callable[[Stack], list[tuple[str, str]]], *, method: str = "GET",
           host: Callable[[Stack], str | None] | None = None, extra: list[tuple[str, str]] | None = None,
           allow: bool | None = None, reasons: tuple[str, ...] = (),
           cert: Callable[[Stack], harness.ClientCert | None] | None = None) -> Case:
    def build(stack: Stack) -> tuple[bytes, harness.ClientCert | None]:
        host_value = host(stack) if host is not None else f"localhost:{stack.port}"
        headers = [*(extra or []), *creds(stack)]
        return request_bytes(method, target.replace("{port}", str(stack.port)), host_value, headers), (
            cert(stack) if cert else None)

    return Case(name, build, allow, reasons)


def host_is(value: str) -> Callable[[Stack], str | None]:
    return lambda stack: value.replace("{port}", str(stack.port))


def dpop_for(path: str, host: str = "localhost", **claims: object) -> Callable[[Stack], list[tuple[str, str]]]:
    return lambda stack: dpop(stack, stack.url(path, host), **claims)


def read(stack: Stack) -> list[tuple[str, str]]:
    return bearer(stack)


def nothing(stack: Stack) -> list[tuple[str, str]]:
    return []


def victim_cert(stack: Stack) -> list[tuple[str, str]]:
    """A stolen certificate-bound token, plus the victim's public certificate in an underscore header."""
    token = stack.issuer.token(cnf={"x5t#S256": stack.tls.cert1.x5t_s256})
    victim = (base64.b64encode(stack.tls.cert1.der).decode() if stack.proxy == "caddy"
              else quote(stack.tls.cert1.pem, safe=""))
    name = "X_Forwarded_Tls_Client_Cert" if stack.proxy == "caddy" else "X_SSL_Client_Cert"
    return [("Authorization", f"Bearer {token}"), (name, victim)]


NOT_ALLOWED_HOST = ("bad_forwarded_host", "bad_host", "bad_forwarded_port", "insufficient_scope", "dpop_htu_mismatch")
HOSTS = ["api.test?", "api.test#", "api.test#@evil", "user@api.test", "api.test/admin", "api.test\\admin",
         "api test", "api.test:70000", "api.test:0", "api.test:-1", "[::1]:99999", "api.test:443:1", "api.test,evil"]

CORPUS: list[Case] = [
    # Item 1: a host that ends the authority early made tokenguard decide "/" while nginx forwarded /admin/x.
    *[simple(f"host {h!r} on /admin/x", "/admin/x", dpop_for("/"), host=host_is(h), allow=False,
             reasons=NOT_ALLOWED_HOST) for h in HOSTS],
    simple("host 'api.test#' on an mTLS-only route with a DPoP token", "/mtls/secret", dpop_for("/mtls/secret"),
           host=host_is("api.test#"), allow=False,
           reasons=("bad_forwarded_host", "bad_host", "binding_not_allowed", "dpop_htu_mismatch")),
    simple("upper-case host", "/dpop/x", dpop_for("/dpop/x"), host=host_is("LOCALHOST:{port}"), allow=True),
    simple("host with a trailing dot", "/x", read, host=host_is("localhost.:{port}")),
    simple("no Host", "/x", read, host=lambda stack: None, allow=False),
    simple("duplicate Host", "/x", read, extra=[("Host", "evil.test")], allow=False),
    simple("another host", "/x", read, host=host_is("other.test"), allow=None),
    # request targets
    simple("absolute-form target", "https://localhost:{port}/admin/x", read, allow=False,
           reasons=("insufficient_scope",)),
    simple("absolute-form target naming another host", "http://other.test/x", read),
    simple("%2F in the path", "/admin%2Fx", read),
    simple("%2F..%2F", "/public%2F..%2Fadmin/x", read),
    simple("%2e%2e segment", "/x/%2e%2e/admin/x", read, allow=False, reasons=("insufficient_scope",)),
    simple("%2E%2E segment", "/x/%2E%2E/admin/x", read, allow=False, reasons=("insufficient_scope",)),
    simple("dot segments", "/x/../admin/x", read, allow=False, reasons=("insufficient_scope",)),
    simple("single dot", "/./admin/x", read, allow=False, reasons=("insufficient_scope",)),
    simple("above the root", "/../admin/x", read, allow=False, reasons=("insufficient_scope", "bad_request_uri")),
    simple("double slash first", "//admin/x", read),
    simple("double slash inside", "/admin//x", read, allow=False, reasons=("insufficient_scope",)),
    simple("matrix parameter", "/admin;x=1/y", read),
    simple("backslash", "/admin\\x", read, reasons=("bad_request_uri",)),  # Caddy forwards it as %5C
    simple("fragment in the target", "/admin/x#frag", read, allow=False,
           reasons=("bad_request_uri", "insufficient_scope")),
    simple("raw UTF-8 in the path", "/\u00e9t\u00e9", read, reasons=("bad_request_uri",)),  # Caddy: %E9
    simple("encoded NUL", "/x%00y", read),
    simple("encoded CRLF", "/x%0d%0aX-Injected:%201", read),
    simple("long query (10 KB)", "/x?q=" + "a" * 10000, read, allow=False, reasons=("request_uri_too_large",)),
    # Item 2: header names
    simple("underscore X_Original_URI", "/admin/x", read, extra=[("X_Original_URI", "/x")], allow=False,
           reasons=("underscore_header", "insufficient_scope")),
    simple("underscore certificate header with a stolen token", "/mtls/secret", victim_cert, allow=False,
           reasons=("underscore_header", "cert_missing")),
    simple("mixed-case X-ORIGINAL-uri", "/admin/x", read, extra=[("x-ORIGINAL-uri", "/x")], allow=False,
           reasons=("insufficient_scope",)),
    simple("mixed spelling X-Original_URI", "/admin/x", read, extra=[("X-Original_URI", "/x")], allow=False,
           reasons=("underscore_header", "insufficient_scope")),
    simple("client X-Forwarded-Host", "/dpop/x", dpop_for("/dpop/x", "evil.test"),
           extra=[("X-Forwarded-Host", "evil.test")], allow=False,
           reasons=("dpop_htu_mismatch", "bad_forwarded_host")),
    simple("client X-Forwarded-Port", "/dpop/x", lambda s: dpop(s, "https://localhost:9999/dpop/x"),
           extra=[("X-Forwarded-Port", "9999")], allow=False, reasons=("dpop_htu_mismatch",)),
    simple("client X-Forwarded-Uri and -Method", "/admin/x", read,
           extra=[("X-Forwarded-Uri", "/x"), ("X-Forwarded-Method", "GET")], allow=False,
           reasons=("insufficient_scope", "bad_request_uri")),
    simple("client X-Auth-Subject", "/x", read, extra=[("X-Auth-Subject", "admin"), ("X_Auth_Subject", "admin")]),
    simple("obs-fold", "/x", read, extra=[("X-Folded", "a\r\n b")]),
    simple("NUL in a value", "/x", read, extra=[("X-Nul", "a\x00b")], allow=False),
    simple("bare CR in a value", "/x", read, extra=[("X-Cr", "a\rb")], allow=False),
    simple("space before the colon", "/x", lambda s: [("Authorization ", bearer(s)[0][1])], allow=False),
    # Item 4: sizes
    simple("15 KB access token", "/x", lambda s: bearer(s, pad="p" * 11000), allow=True),
    simple("DPoP proof just over 8 KiB", "/dpop/x", dpop_for("/dpop/x", pad="x" * 5750), allow=False,
           reasons=("dpop_too_large",)),
    simple("30 KB cookie", "/x", read, extra=[("Cookie", "c=" + "v" * 30000)], allow=True),
    simple("90 KB of cookies", "/x", read, extra=[("Cookie", "c=" + "v" * 30000)] * 3, allow=False,
           reasons=("headers_too_large",)),
    simple("40 KB field", "/x", read, extra=[("X-Big", "b" * 40000)]),
    simple("99 DPoP headers", "/dpop/x",
           lambda s: [*dpop(s, s.url("/dpop/x")), *[("DPoP", dpop(s, s.url("/dpop/x"))[1][1]) for _ in range(98)]],
           allow=False, reasons=("dpop_multiple_proofs",)),
    simple("150 header fields", "/x", read, extra=[(f"X-Pad-{n}", "1") for n in range(150)], allow=True),
    simple("300 header fields", "/x", read, extra=[(f"X-Pad-{n}", "1") for n in range(300)], allow=False,
           reasons=("too_many_header_fields",)),
    simple("40,000 tiny header fields", "/x", read, extra=[(f"x{n}", "1") for n in range(40000)], allow=False,
           reasons=("too_many_header_fields",)),
    # Item 5: one token, one place
    simple("a token in the header and the query", "/x?access_token=AT", read, allow=False,
           reasons=("multiple_token_methods",)),
    simple("an encoded access_token name", "/x?a=1&%61ccess_token=AT", read, allow=False,
           reasons=("multiple_token_methods",)),
    simple("a token in the query only", "/x?access_token=AT", nothing, allow=False, reasons=("token_in_query",)),
    simple("two Authorization fields", "/x", lambda s: [*bearer(s), *bearer(s)], allow=False,
           reasons=("multiple_authorization",)),
    # sanity: the ordinary requests are allowed and decided as forwarded
    simple("plain bearer", "/x?page=2", read, allow=True),
    simple("plain DPoP", "/dpop/x?page=2", dpop_for("/dpop/x"), allow=True),
    simple("admin scope", "/admin/x", lambda s: bearer(s, scope="admin"), allow=True),
]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_hostile_framings_are_decided_as_forwarded(stack: Stack, case: Case) -> None:
    data, cert = case.build(stack)
    outcome = stack.send(data, cert)
    result = judge(stack, outcome, case.name)
    if case.allow is True:
        assert result == "allowed", (result, outcome.response.status, outcome.response.all("X-Auth-Error"))
    elif case.allow is False:
        assert result != "allowed", (result, outcome.upstream)
    if result == "denied" and case.reasons:
        assert outcome.decisions[0]["reason"] in case.reasons, outcome.decisions[0]


# --------------------------------------------------------------------------------- generated variants

SEGMENTS = ["admin", "x", "dpop", "mtls", "..", ".", "", "%2e%2e", "%2E", "%2F", "%5C", "%00", ";a=1", "%25",
            "~", "%7E", "a%20b", "A", "%41", "*", "@", ":", "!$&'()+,="]
HOST_VARIANTS = ["localhost:{port}", "LocalHost:{port}", "localhost", "127.0.0.1:{port}", "api.test", "api.test?",
                 "api.test#", "a@api.test", "[::1]:{port}", "api.test:99999", "api.test:", "xn--e1a.test",
                 "api_test", "api.test.", "%61pi.test"]
EXTRA_NAMES = ["X_Original_URI", "x-original-uri", "X-Original_URI", "X-Forwarded-Host", "X_Forwarded_Host",
               "X-Forwarded-Port", "X-Forwarded-Proto", "X_Forwarded_Tls_Client_Cert", "X-SSL-Client-Cert",
               "Client-Cert", "X-Forwarded-Uri", "X-Forwarded-Method", "X-Original-Method", "Forwarded",
               "X-Auth-Subject"]
EXTRA_VALUES = ["/x", "/admin/x", "evil.test", "9999", "https", "http", "GET", "POST", "for=1.2.3.4;host=evil",
                "admin", ":AAAA:"]


@st.composite
def variant(draw: st.DrawFn) -> Case:
    path = "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5)))
    query = draw(st.sampled_from(["", "?q=1", "?access_token=AT", "?a=1;access_token=AT", "?%61ccess_token=AT"]))
    # mostly hosts the proxy serves, so that many variants reach the upstream and are compared
    host = draw(st.sampled_from(HOST_VARIANTS[:2]) | st.sampled_from(HOST_VARIANTS))
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH"]))
    extra = draw(st.lists(st.tuples(st.sampled_from(EXTRA_NAMES), st.sampled_from(EXTRA_VALUES)), max_size=2))
    creds = draw(st.sampled_from(["read", "read", "admin", "dpop", "none", "dpop-for-root"]))

    def credentials(stack: Stack) -> list[tuple[str, str]]:
        if creds == "none":
            return []
        if creds in ("read", "admin"):
            return bearer(stack, scope=creds)
        htu = stack.url("/" if creds == "dpop-for-root" else normalize_path(path))
        return dpop(stack, htu, method=method)

    name = f"{method} {path}{query} Host={host} {extra} {creds}"
    return simple(name, path + query, credentials, method=method, host=host_is(host), extra=extra)


@settings(derandomize=True, max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=variant())
def test_generated_variants_are_decided_as_forwarded(stack: Stack, case: Case) -> None:
    data, cert = case.build(stack)
    judge(stack, stack.send(data, cert), case.name)
