"""tokenguard end to end: real HTTPS through the shipped nginx (and Caddy) config, `tokenguard serve` with
2 gunicorn workers, a stub issuer, real redis-server and a header-echoing upstream.

Covers issue 3's integration bullets and R-14 (docs/rules.md), MTLS-RS-10, SCOPE-RS-04, NONCE-RS-01/02/07 and
DPOP-RS-34 end to end. Which worker answered is read from the per-worker metric files that
`serve` already writes (`harness.worker_counters`), so the replay test proves a proof accepted by one
worker is refused by the other without any test-only product feature.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import harness
import pytest
from support import wait_for

from tokenguard.core.dpop import create_proof

pytestmark = pytest.mark.integration

ROUTES = """
[[route]]
path = "/resource"
binding = "bound"
scopes = ["read"]
[[route]]
path = "/write"
methods = ["POST"]
binding = "bound"
scopes = ["write"]
[[route]]
path = "/bearer"
binding = "any"
[[route]]
path = "/dpop-only"
binding = "dpop"
[[route]]
path = "/nonce"
binding = "dpop"
dpop_nonce = true
"""
DECISIONS = "tokenguard_decisions_total"


# ------------------------------------------------------------------------------------------- helpers

_AUTH_PARAM = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^,\s]*)\s*(?:,|$)")
_AUTH_SCHEME = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:,|$)?")


def parse_challenges(values: list[str]) -> dict[str, dict[str, str]]:
    """RFC 9110 §11.6.1 WWW-Authenticate: scheme -> {param: value}, over every header line."""
    challenges: dict[str, dict[str, str]] = {}
    for value in values:
        pos, current = 0, None
        while pos < len(value):
            if value[pos] in " ,":
                pos += 1
                continue
            param = _AUTH_PARAM.match(value, pos)
            if param and current is not None:
                raw = param.group(2)
                text = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
                assert param.group(1).lower() not in current, f"duplicate parameter in {value!r}"
                current[param.group(1).lower()] = text
                pos = param.end()
                continue
            scheme = _AUTH_SCHEME.match(value, pos)
            assert scheme and scheme.group(1), f"cannot parse WWW-Authenticate {value!r} at {pos}"
            assert scheme.group(1) not in challenges, f"scheme twice in {values!r}"
            current = challenges[scheme.group(1)] = {}
            pos = scheme.end()
    return challenges


def one(record: dict[str, object], name: str) -> str:
    values = harness.header_values(record, name)
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


@dataclass
class DpopClient:
    """A DPoP key pair and a token bound to it."""

    jwk: dict[str, object]
    jkt: str
    token: str

    @classmethod
    def new(cls, issuer: harness.StubIssuer, scope: str = "read") -> DpopClient:
        key = harness.dpop_key()
        jkt = str(key["jkt"])
        return cls(key["jwk"], jkt, issuer.token(scope=scope, cnf={"jkt": jkt}))  # type: ignore[arg-type]

    def headers(self, method: str, url: str, nonce: str | None = None) -> list[tuple[str, str]]:
        proof = create_proof(self.jwk, htm=method, htu=url, access_token=self.token, nonce=nonce)
        return [("Authorization", f"DPoP {self.token}"), ("DPoP", proof)]


@dataclass
class Stack:
    """proxy (nginx or Caddy) -> tokenguard (2 workers) -> echo upstream, plus the stub issuer."""

    base: str
    direct: str
    tokenguard: harness.ManagedProcess
    state_dir: Path
    issuer: harness.StubIssuer
    upstream: harness.ThreadedServer
    tls: harness.TLSMaterial
    procs: list[harness.ManagedProcess] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def call(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        cert: harness.ClientCert | None = None,
        body: bytes | None = None,
    ) -> harness.Response:
        self.upstream.requests.clear()
        return harness.request(
            method, self.url(path), headers=headers or [], body=body, ca=self.tls.ca_path, client_cert=cert
        )

    def upstream_request(self) -> dict[str, object]:
        assert len(self.upstream.requests) == 1, self.upstream.requests
        return self.upstream.requests[0]

    def counters(self) -> dict[int, dict[tuple[str, tuple[str, ...]], float]]:
        return harness.worker_counters(self.state_dir, self.tokenguard.popen.pid)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _start_stack(
    tmp: Path,
    tls: harness.TLSMaterial,
    upstream: harness.ThreadedServer,
    *,
    store: str = "embedded",
    proxy: str = "nginx",
) -> Stack:
    if harness.require_binary(proxy) is None:
        pytest.skip(f"{proxy} is not installed (apt-get install {proxy})")
    issuer = harness.StubIssuer()
    procs: list[harness.ManagedProcess] = []
    try:
        if store == "redis":
            if harness.require_binary("redis-server") is None:
                pytest.skip("redis-server is not installed (apt-get install redis-server)")
            redis = harness.start_redis(tmp)
            procs.append(redis)
            store = f"redis://127.0.0.1:{redis.port}/0"
        port = harness.free_port()
        extra = ""
        if proxy == "caddy":
            extra = '[mtls]\ncert_header = "X-Forwarded-Tls-Client-Cert"\ncert_format = "base64-der"\n'
        config = harness.tokenguard_config(
            tmp / "tokenguard.toml", port=port, state_dir=tmp / "state", issuer=issuer.issuer, store=store,
            extra=extra, routes=ROUTES,
        )  # fmt: skip
        tokenguard = harness.start_tokenguard(config, port, tmp / "logs", workers=2)
        procs.append(tokenguard)
        if proxy == "nginx":
            listen = harness.free_port()
            ports = harness.NginxPorts(listen, port, upstream.port, harness.free_port(), upstream.port)
            procs.append(harness.start_nginx(tmp / "nginx", ports, tls))
        else:
            listen = harness.free_port()
            caddy_ports = harness.CaddyPorts(listen, port, upstream.port, harness.free_port())
            procs.append(harness.start_caddy(tmp / "caddy", caddy_ports, tls))
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        issuer.close()
        raise
    return Stack(
        f"https://localhost:{listen}", f"http://127.0.0.1:{port}", tokenguard, tmp / "state", issuer, upstream, tls,
        procs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def nginx_stack(
    tmp_path_factory: pytest.TempPathFactory, tls_material: harness.TLSMaterial, echo_upstream: harness.ThreadedServer
) -> Iterator[Stack]:
    """nginx -> tokenguard (embedded replay store, 2 workers)."""
    stack = _start_stack(tmp_path_factory.mktemp("e2e-embedded"), tls_material, echo_upstream)
    yield stack
    stack.stop()
    stack.issuer.close()


@pytest.fixture(scope="module")
def redis_stack(
    tmp_path_factory: pytest.TempPathFactory, tls_material: harness.TLSMaterial, echo_upstream: harness.ThreadedServer
) -> Iterator[Stack]:
    """nginx -> tokenguard (Redis replay store, 2 workers) -> real redis-server."""
    stack = _start_stack(tmp_path_factory.mktemp("e2e-redis"), tls_material, echo_upstream, store="redis")
    yield stack
    stack.stop()
    stack.issuer.close()


@pytest.fixture(scope="module")
def caddy_stack(
    tmp_path_factory: pytest.TempPathFactory, tls_material: harness.TLSMaterial, echo_upstream: harness.ThreadedServer
) -> Iterator[Stack]:
    """Caddy (shipped Caddyfile, certificate as base64 DER) -> tokenguard (2 workers)."""
    stack = _start_stack(tmp_path_factory.mktemp("e2e-caddy"), tls_material, echo_upstream, proxy="caddy")
    yield stack
    stack.stop()
    stack.issuer.close()


@pytest.fixture(params=["embedded", "redis"])
def stack(request: pytest.FixtureRequest) -> Stack:
    """Both nginx stacks: the replay-sensitive tests run against each store."""
    fixture = "nginx_stack" if request.param == "embedded" else "redis_stack"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ DPoP, replay


def _assert_dpop_allowed(stack: Stack, resp: harness.Response, client: DpopClient) -> None:
    assert resp.status == 200, (resp.status, resp.headers, stack.tokenguard.log_tail())
    seen = stack.upstream_request()
    assert one(seen, "X-Auth-Subject") == "alice"
    assert one(seen, "X-Auth-Client-Id") == "client-1"
    assert one(seen, "X-Auth-Binding") == "dpop"
    assert one(seen, "X-Auth-Jkt") == client.jkt
    assert harness.header_values(seen, "X-Auth-X5t-S256") == []


def test_dpop_happy_path(stack: Stack) -> None:
    client = DpopClient.new(stack.issuer)
    resp = stack.call("GET", "/resource?page=2", client.headers("GET", stack.url("/resource")))
    _assert_dpop_allowed(stack, resp, client)
    assert stack.upstream_request()["path"] == "/resource?page=2"
    # POST with a body: the body reaches the app, the proof names POST.
    client = DpopClient.new(stack.issuer, scope="read write")
    resp = stack.call("POST", "/write", client.headers("POST", stack.url("/write")), body=b'{"x": 1}')
    _assert_dpop_allowed(stack, resp, client)
    assert stack.upstream_request()["body"] == '{"x": 1}'
    # The decision log never holds the token or the proof (lines leave in batches: at most 50 ms later).
    wait_for(lambda: '"result":"allow"' in stack.tokenguard.log_tail(200_000), "the allow line in the log")
    log = stack.tokenguard.log_tail(200_000)
    assert client.token not in log and client.token.split(".")[2] not in log


def test_replayed_proof_refused_by_both_workers(stack: Stack) -> None:
    """DPOP-RS-34 across processes: the worker that accepted a proof and the other worker both refuse
    it afterwards (which worker answered is read from the per-worker metrics files)."""
    client = DpopClient.new(stack.issuer)
    headers = client.headers("GET", stack.url("/resource"))

    def replays() -> dict[int, float]:
        return {pid: c.get((DECISIONS, ("dpop_replay", "deny")), 0.0) for pid, c in stack.counters().items()}

    def allows() -> dict[int, float]:
        return {pid: c.get((DECISIONS, ("ok", "allow")), 0.0) for pid, c in stack.counters().items()}

    allows_before, replays_before = allows(), replays()
    first = stack.call("GET", "/resource", headers)
    _assert_dpop_allowed(stack, first, client)
    accepted_by = [pid for pid, n in allows().items() if n > allows_before.get(pid, 0.0)]
    assert len(accepted_by) == 1, accepted_by

    refused_by: set[int] = set()
    sent = 0
    stack.upstream.requests.clear()  # the first, allowed request; no replay may reach the upstream

    def replay(_n: int) -> harness.Response:
        return harness.request("GET", stack.url("/resource"), headers=headers, ca=stack.tls.ca_path)

    # Concurrent replays: nginx keeps one upstream connection per request in flight, and the kernel hands
    # new connections to either worker (sequential requests would ride one kept-alive connection).
    while sent < 20 or (len(refused_by) < 2 and sent < 400):
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(replay, range(16)))
        sent += len(answers)
        for resp in answers:
            assert resp.status == 401, (sent, resp.status, resp.headers)
            assert resp.one("X-Auth-Error") == "dpop_replay"
            challenge = parse_challenges(resp.all("WWW-Authenticate"))
            assert challenge["DPoP"]["error"] in ("invalid_dpop_proof", "invalid_token")
        assert stack.upstream.requests == []
        refused_by = {pid for pid, n in replays().items() if n > replays_before.get(pid, 0.0)}
    assert len(refused_by) == 2, f"only worker(s) {refused_by} answered {sent} replays"
    assert accepted_by[0] in refused_by and len(refused_by - {accepted_by[0]}) == 1
    assert sum(replays().values()) - sum(replays_before.values()) == sent


def test_embedded_state_is_shared_between_processes(tmp_path: Path) -> None:
    """Two processes starting together on a fresh state directory, as `serve --workers 2` does: both
    open the embedded SQLite store and get the same nonce secret (regression: a worker could read a
    half-written secret or hit "database is locked" and fail to boot, taking gunicorn down), then race
    on the same keys: each key is recorded as new exactly once."""
    state = tmp_path / "state"
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import hashlib, json, os, sys, time
        from tokenguard.settings import parse_config
        from tokenguard.settings.wiring import nonce_secret
        from tokenguard.core.replay import open_replay_store
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        config = parse_config({{"server": {{"state_dir": {str(state)!r}}}}}, "test", env={{}})
        secret = hashlib.sha256(nonce_secret(config)).hexdigest()
        store = open_replay_store("embedded", config.state_dir)
        won = [k for k in (f"jkt:{{i}}" for i in range(400)) if store.first_use(k, 60)]
        print(json.dumps({{"secret": secret, "won": won}}), flush=True)
    """)
    procs = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True,
            cwd=harness.REPO,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert results[0]["secret"] == results[1]["secret"]
    won = results[0]["won"] + results[1]["won"]
    assert sorted(won) == sorted(f"jkt:{i}" for i in range(400))  # every key exactly once overall


def _boot_like_a_worker(state: str, barrier: object, results: object) -> None:
    from tokenguard.core.replay import open_replay_store
    from tokenguard.settings import parse_config
    from tokenguard.settings.wiring import nonce_secret

    barrier.wait()  # type: ignore[attr-defined]
    try:
        config = parse_config({"server": {"state_dir": state}}, "test", env={})
        secret = nonce_secret(config)
        open_replay_store("embedded", config.state_dir).first_use("k", 60)
        results.put(("ok", secret))  # type: ignore[attr-defined]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc).encode()))  # type: ignore[attr-defined]


def test_workers_booting_together_share_state(tmp_path: Path) -> None:
    """Regression: two workers booting at the same instant on a fresh state directory. One could read
    the other's half-written nonce secret (empty -> ValueError) or get "database is locked" switching
    SQLite to WAL; either failed the worker's boot and gunicorn then shut the whole service down."""
    import multiprocessing

    import tokenguard.core.replay  # noqa: F401 - imported before forking, so the children race, not import

    ctx = multiprocessing.get_context("fork")
    for round_ in range(40):
        state = str(tmp_path / f"state{round_}")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_boot_like_a_worker, args=(state, barrier, results)) for _ in range(2)]
        for proc in procs:
            proc.start()
        try:
            got = [results.get(timeout=60), results.get(timeout=60)]
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
        assert got[0][0] == got[1][0] == "ok", (round_, got)
        assert got[0][1] == got[1][1] and len(got[0][1]) >= 16, (round_, got)


# ---------------------------------------------------------------------------------------------- mTLS


def test_mtls_bound_token_right_and_wrong_certificate(nginx_stack: Stack) -> None:
    s = nginx_stack
    token = s.issuer.token(cnf={"x5t#S256": s.tls.cert1.x5t_s256})
    auth = [("Authorization", f"Bearer {token}")]
    resp = s.call("GET", "/resource", auth, cert=s.tls.cert1)
    assert resp.status == 200, (resp.headers, s.tokenguard.log_tail())
    seen = s.upstream_request()
    assert one(seen, "X-Auth-Binding") == "mtls"
    assert one(seen, "X-Auth-X5t-S256") == s.tls.cert1.x5t_s256
    assert one(seen, "X-Auth-Subject") == "alice"
    assert harness.header_values(seen, "X-Auth-Jkt") == []

    for cert, reason in ((s.tls.cert2, "cert_mismatch"), (s.tls.cert1b, "cert_mismatch"), (None, "cert_missing")):
        resp = s.call("GET", "/resource", auth, cert=cert)
        assert resp.status == 401, (cert, resp.status)
        assert resp.one("X-Auth-Error") == reason
        assert parse_challenges(resp.all("WWW-Authenticate"))["Bearer"]["error"] == "invalid_token"
        assert s.upstream.requests == []


def test_mtls_rs_10_client_sent_cert_header_is_overwritten(nginx_stack: Stack) -> None:
    """MTLS-RS-10: TLS certificate CERT2, plus the client's own X-SSL-Client-Cert: <CERT1> -> 401."""
    s = nginx_stack
    token = s.issuer.token(cnf={"x5t#S256": s.tls.cert1.x5t_s256})
    spoof = [("Authorization", f"Bearer {token}"), ("X-SSL-Client-Cert", s.tls.cert1.escaped_pem)]
    resp = s.call("GET", "/resource", spoof, cert=s.tls.cert2)
    assert resp.status == 401
    assert parse_challenges(resp.all("WWW-Authenticate"))["Bearer"]["error"] == "invalid_token"
    assert resp.one("X-Auth-Error") == "cert_mismatch"
    # Without any TLS certificate the client's header is not believed either.
    resp = s.call("GET", "/resource", spoof)
    assert resp.status == 401
    assert resp.one("X-Auth-Error") == "cert_missing"
    assert s.upstream.requests == []


# --------------------------------------------------------------------------------- bearer, scope, nonce


def test_bearer_allowed_only_where_the_route_allows_it(nginx_stack: Stack) -> None:
    s = nginx_stack
    token = s.issuer.token()
    resp = s.call("GET", "/bearer", [("Authorization", f"Bearer {token}")])
    assert resp.status == 200, (resp.headers, s.tokenguard.log_tail())
    assert one(s.upstream_request(), "X-Auth-Binding") == "bearer"
    assert one(s.upstream_request(), "X-Auth-Subject") == "alice"
    for path in ("/dpop-only", "/resource"):
        resp = s.call("GET", path, [("Authorization", f"Bearer {token}")])
        assert resp.status == 401, path
        assert resp.one("X-Auth-Error") == "binding_required"
        challenges = parse_challenges(resp.all("WWW-Authenticate"))
        assert "algs" in challenges["DPoP"]
        assert s.upstream.requests == []


def test_scope_rs_04_insufficient_scope_reaches_client(nginx_stack: Stack) -> None:
    """SCOPE-RS-04 through nginx: 403 with the DPoP insufficient_scope challenge, one header line."""
    s = nginx_stack
    client = DpopClient.new(s.issuer, scope="read")
    resp = s.call("POST", "/write", client.headers("POST", s.url("/write")), body=b"x=1")
    assert resp.status == 403
    lines = resp.all("WWW-Authenticate")
    assert len(lines) == 1, lines
    dpop = parse_challenges(lines)["DPoP"]
    assert dpop["error"] == "insufficient_scope"
    assert dpop["scope"] == "write"
    assert dpop["algs"].split() and "ES256" in dpop["algs"].split()
    assert resp.one("X-Auth-Error") == "insufficient_scope"
    assert resp.one("Cache-Control") == "no-store"
    assert s.upstream.requests == []


def test_use_dpop_nonce_round_trip(nginx_stack: Stack) -> None:
    """NONCE-RS-01/02/07 through nginx: 401 use_dpop_nonce with exactly one DPoP-Nonce, then 200."""
    s = nginx_stack
    client = DpopClient.new(s.issuer)
    resp = s.call("GET", "/nonce", client.headers("GET", s.url("/nonce")))
    assert resp.status == 401
    assert parse_challenges(resp.all("WWW-Authenticate"))["DPoP"]["error"] == "use_dpop_nonce"
    nonces = resp.all("DPoP-Nonce")
    assert len(nonces) == 1 and re.fullmatch(r"[\x21\x23-\x5B\x5D-\x7E]+", nonces[0]), nonces
    assert resp.one("Cache-Control") == "no-store"
    assert s.upstream.requests == []

    resp = s.call("GET", "/nonce", client.headers("GET", s.url("/nonce"), nonce=nonces[0]))
    assert resp.status == 200, (resp.headers, s.tokenguard.log_tail())
    assert len(resp.all("DPoP-Nonce")) <= 1
    assert one(s.upstream_request(), "X-Auth-Jkt") == client.jkt


# ------------------------------------------------------------------------------ spoofing, no token


def test_client_sent_proxy_headers_gain_nothing(nginx_stack: Stack) -> None:
    s = nginx_stack
    bearer = [("Authorization", f"Bearer {s.issuer.token()}")]
    # X-Original-URI (and other proxies' X-Forwarded-Uri / -Method) naming a bearer-allowed route.
    spoof = [("X-Original-URI", "/bearer"), ("X-Forwarded-Uri", "/bearer"), ("X-Original-Method", "GET")]
    resp = s.call("GET", "/dpop-only", [*bearer, *spoof])
    assert resp.status == 401 and resp.one("X-Auth-Error") == "binding_required"
    assert s.upstream.requests == []

    # X-Forwarded-Host / -Port / -Proto naming the host a stolen proof was made for.
    client = DpopClient.new(s.issuer)
    stolen = client.headers("GET", "https://evil.example/resource")
    forwarded = [("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Port", "443"), ("X-Forwarded-Proto", "https")]
    resp = s.call("GET", "/resource", [*stolen, *forwarded])
    assert resp.status == 401 and resp.one("X-Auth-Error") == "dpop_htu_mismatch"
    assert s.upstream.requests == []

    # X-SSL-Client-Cert with the certificate the token is bound to, but no TLS certificate.
    token = s.issuer.token(cnf={"x5t#S256": s.tls.cert1.x5t_s256})
    spoof = [("Authorization", f"Bearer {token}"), ("X-SSL-Client-Cert", s.tls.cert1.escaped_pem)]
    resp = s.call("GET", "/resource", spoof)
    assert resp.status == 401 and resp.one("X-Auth-Error") == "cert_missing"
    # Identity headers sent by the client never reach the app as such.
    resp = s.call("GET", "/bearer", [*bearer, ("X-Auth-Subject", "mallory"), ("X-Auth-Jkt", "forged")])
    assert resp.status == 200
    assert one(s.upstream_request(), "X-Auth-Subject") == "alice"
    assert harness.header_values(s.upstream_request(), "X-Auth-Jkt") == []


def test_request_without_token_is_denied(nginx_stack: Stack) -> None:
    """The shipped config really runs auth_request: no token -> 401 with challenges, app untouched."""
    s = nginx_stack
    for path in ("/resource", "/bearer", "/not-a-route"):
        resp = s.call("GET", path)
        assert resp.status in (401, 403), path
        assert s.upstream.requests == [], path
    resp = s.call("GET", "/resource")
    assert resp.status == 401
    challenges = parse_challenges(resp.all("WWW-Authenticate"))
    assert set(challenges) == {"Bearer", "DPoP"} and "error" not in challenges["DPoP"]
    assert resp.one("Cache-Control") == "no-store"


# ---------------------------------------------------------------------------------------------- Caddy


def test_caddy_dpop_and_mtls(caddy_stack: Stack) -> None:
    """The same happy paths through the shipped Caddyfile (certificate as base64 DER)."""
    s = caddy_stack
    client = DpopClient.new(s.issuer)
    headers = client.headers("GET", s.url("/resource"))
    resp = s.call("GET", "/resource?x=1", headers)
    _assert_dpop_allowed(s, resp, client)
    resp = s.call("GET", "/resource?x=1", headers)
    assert resp.status == 401 and resp.one("X-Auth-Error") == "dpop_replay"
    assert s.upstream.requests == []

    token = s.issuer.token(cnf={"x5t#S256": s.tls.cert1.x5t_s256})
    auth = [("Authorization", f"Bearer {token}")]
    resp = s.call("GET", "/resource", auth, cert=s.tls.cert1)
    assert resp.status == 200, (resp.headers, s.tokenguard.log_tail())
    seen = s.upstream_request()
    assert one(seen, "X-Auth-Binding") == "mtls"
    assert one(seen, "X-Auth-X5t-S256") == s.tls.cert1.x5t_s256
    spoof = [*auth, ("X-Forwarded-Tls-Client-Cert", s.tls.cert1.base64_der)]
    resp = s.call("GET", "/resource", spoof, cert=s.tls.cert2)
    assert resp.status == 401 and resp.one("X-Auth-Error") == "cert_mismatch"
    assert parse_challenges(resp.all("WWW-Authenticate"))["Bearer"]["error"] == "invalid_token"

    client = DpopClient.new(s.issuer, scope="read")
    resp = s.call("POST", "/write", client.headers("POST", s.url("/write")), body=b"x")
    assert resp.status == 403
    assert parse_challenges(resp.all("WWW-Authenticate"))["DPoP"]["scope"] == "write"
