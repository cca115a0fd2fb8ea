"""Fault tests against the real service: `tokenguard serve` (every engine in ENGINES, 2 workers), stub issuers
that go down, turn slow or trickle, real redis-server that is stopped and restarted, the shipped nginx
config in front.

Issue 3's fault bullets: cached keys survive an IdP outage; no keys ever -> fail closed with a reason;
Redis down -> fail closed and /readyz says so, Redis back -> recovery without a restart; slow JWKS and
introspection bounded by `[token] http_timeout`; `memory` store refused with 2 workers; SIGHUP reload
(new config applied, a broken one refused with the old one kept in force).

Issue 10's fault suite (items 1, 2, 6, 7, 8), which reports its figures in the run's summary: a slow or
trickling issuer, and forged tokens naming a slow issuer, cost other issuers' requests less than 20 % of
their throughput and make no request wait longer than the `token.key_wait` budget; keys survive a SIGHUP
and a restart with the issuer down, until `token.jwks_max_stale`; a reload that could not serve is
refused on both engines; the last good config stays private; operators get JSON lines that say what
happened. No timing assertions beyond generous "it did not hang" bounds; every wait is a poll.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import pytest
from support import wait_for

from tokenguard.core.dpop import create_proof
from tokenguard.serving import ENGINES

pytestmark = pytest.mark.integration

StartTokenguard = Callable[..., harness.ManagedProcess]
PUBLIC = "https://api.example:8443"
ROUTES = """
[[route]]
path = "/bearer*"
binding = "any"
[[route]]
path = "/dpop*"
binding = "dpop"
"""
HANG_BOUND = 15.0  # "bounded, not hanging": far above the 1 s http_timeout, far below nginx/gunicorn limits


def bearer(issuer: harness.StubIssuer) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {issuer.token()}")]


def dpop(issuer: harness.StubIssuer, method: str, url: str) -> tuple[list[tuple[str, str]], str]:
    """Authorization + a fresh proof for a fresh DPoP-bound token; also returns the proof."""
    key = harness.dpop_key()
    token = issuer.token(cnf={"jkt": str(key["jkt"])})
    proof = create_proof(key["jwk"], htm=method, htu=url, access_token=token)  # type: ignore[arg-type]
    return [("Authorization", f"DPoP {token}"), ("DPoP", proof)], proof


def readyz(port: int) -> tuple[int, dict[str, object]]:
    resp = harness.request("GET", f"http://127.0.0.1:{port}/readyz")
    return resp.status, json.loads(resp.body)


def start_nginx(tmp: Path, tls: harness.TLSMaterial, verifier_port: int, upstream: harness.ThreadedServer) -> tuple[
    harness.ManagedProcess, str
]:
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    listen = harness.free_port()
    ports = harness.NginxPorts(listen, verifier_port, upstream.port, harness.free_port(), upstream.port)
    return harness.start_nginx(tmp / "nginx", ports, tls), f"https://localhost:{listen}"


@pytest.fixture
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


# ---------------------------------------------------------------------------------------------- JWKS


def test_jwks_down_after_keys_cached_still_verifies(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    """Both workers fetch the keys, then the IdP goes away (connection refused) and the keys expire
    (jwks_ttl = 1): refreshes fail, but fresh tokens keep verifying on every worker."""
    port = harness.free_port()
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
        token={"jwks_ttl": 1, "http_timeout": 1}, routes=ROUTES,
    )  # fmt: skip
    tg = start_tokenguard(config, port)
    fetches = ("tokenguard_jwks_fetches_total", (issuer.issuer, "ok"))
    failures = ("tokenguard_jwks_fetches_total", (issuer.issuer, "error"))

    def workers_with(key: tuple[str, tuple[str, ...]]) -> int:
        counters = harness.worker_counters(tmp_path / "state", tg.popen.pid)
        return sum(1 for values in counters.values() if values.get(key, 0) > 0)

    def warm() -> bool:
        resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer))
        assert resp.status == 200, (resp.headers, tg.log_tail())
        return workers_with(fetches) == 2

    wait_for(warm, "both workers to fetch the issuer's keys")
    issuer.close()
    time.sleep(1.5)  # let the 1 s key TTL lapse, so the next requests try (and fail) to refresh
    for _ in range(20):  # fresh tokens each time: the validated-token cache cannot help
        resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer))
        assert resp.status == 200, (resp.headers, tg.log_tail())
        headers, _ = dpop(issuer, "GET", f"{PUBLIC}/dpop")
        resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", headers)
        assert resp.status == 200, (resp.headers, tg.log_tail())
    assert workers_with(failures) >= 1, "no refresh was attempted while the IdP was down"
    assert readyz(port)[0] == 200  # keys are loaded: ready, even though the IdP is down
    assert tg.alive()


def test_never_had_keys_fails_closed(
    tmp_path: Path,
    issuer: harness.StubIssuer,
    start_tokenguard: StartTokenguard,
    tls_material: harness.TLSMaterial,
    echo_upstream: harness.ThreadedServer,
) -> None:
    issuer.close()  # the IdP was never reachable: connection refused on its port
    port = harness.free_port()
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
        token={"http_timeout": 1}, routes=ROUTES,
    )  # fmt: skip
    tg = start_tokenguard(config, port)
    nginx, base = start_nginx(tmp_path, tls_material, port, echo_upstream)
    try:
        echo_upstream.requests.clear()
        resp = harness.request("GET", f"{base}/bearer", headers=bearer(issuer), ca=tls_material.ca_path)
        assert resp.status == 500
        assert json.loads(resp.body)["error"] == "server_error"
        headers, _ = dpop(issuer, "GET", f"{base}/dpop")
        resp = harness.request("GET", f"{base}/dpop", headers=headers, ca=tls_material.ca_path)
        assert resp.status == 500
        assert echo_upstream.requests == []
    finally:
        nginx.stop()
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer))
    assert resp.status == 500
    assert resp.one("X-Auth-Error") == "jwks_unavailable"
    assert resp.one("Cache-Control") == "no-store"
    status, body = readyz(port)
    assert status == 503 and body["ready"] is False
    checks = body["checks"]
    assert isinstance(checks, dict)
    reason = checks[f"issuer {issuer.issuer}"]
    assert reason != "ok" and issuer.issuer in str(reason), checks
    assert checks["replay_store"] == "ok"
    assert '"reason":"jwks_unavailable"' in tg.log_tail()


def test_slow_jwks_is_bounded_and_fails_closed(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    issuer.slow_paths = {"/jwks", "/.well-known/oauth-authorization-server"}
    issuer.delay = 6.0
    port = harness.free_port()
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
        token={"http_timeout": 1}, routes=ROUTES,
    )  # fmt: skip
    start_tokenguard(config, port)
    for path in ("/bearer", "/dpop"):
        headers = bearer(issuer) if path == "/bearer" else dpop(issuer, "GET", PUBLIC + path)[0]
        started = time.monotonic()
        resp = harness.auth_subrequest(port, "GET", PUBLIC + path, headers)
        assert time.monotonic() - started < HANG_BOUND
        assert resp.status == 500
        assert resp.one("X-Auth-Error") == "jwks_unavailable"
    started = time.monotonic()
    status, _ = readyz(port)
    assert status == 503 and time.monotonic() - started < HANG_BOUND


def test_slow_introspection_is_bounded_and_fails_closed(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    port = harness.free_port()
    introspection = (
        f'introspection_endpoint = "{issuer.issuer}/introspect"\n'
        'introspection_client_id = "rs"\nintrospection_client_secret = "rs-secret"\n'
    )
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
        token={"http_timeout": 1}, issuer_extra=introspection, routes=ROUTES,
    )  # fmt: skip
    start_tokenguard(config, port)
    now = int(time.time())
    for name in ("opaque-fast", "opaque-slow"):
        issuer.opaque[name] = {"active": True, "sub": "alice", "client_id": "client-1", "scope": "read",
                               "iss": issuer.issuer, "aud": harness.AUDIENCE, "exp": now + 600}  # fmt: skip
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", [("Authorization", "Bearer opaque-fast")])
    assert resp.status == 200, resp.headers
    assert resp.one("X-Auth-Subject") == "alice"

    issuer.slow_paths = {"/introspect"}
    issuer.delay = 6.0
    started = time.monotonic()
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", [("Authorization", "Bearer opaque-slow")])
    assert time.monotonic() - started < HANG_BOUND
    assert resp.status == 500
    assert resp.one("X-Auth-Error") == "introspection_unavailable"


# --------------------------------------------------------------------------------------------- Redis


def test_redis_down_fails_closed_and_recovers(
    tmp_path: Path,
    issuer: harness.StubIssuer,
    start_tokenguard: StartTokenguard,
    redis_server: harness.ManagedProcess,
    tls_material: harness.TLSMaterial,
    echo_upstream: harness.ThreadedServer,
) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
        store=f"redis://127.0.0.1:{redis_server.port}/0", routes=ROUTES,
    )  # fmt: skip
    tg = start_tokenguard(config, port)
    nginx, base = start_nginx(tmp_path, tls_material, port, echo_upstream)
    restarted: harness.ManagedProcess | None = None
    try:

        def through_nginx(headers: list[tuple[str, str]]) -> harness.Response:
            echo_upstream.requests.clear()
            return harness.request("GET", f"{base}/dpop", headers=headers, ca=tls_material.ca_path)

        assert through_nginx(dpop(issuer, "GET", f"{base}/dpop")[0]).status == 200
        assert readyz(port)[0] == 200

        redis_server.stop()
        for _ in range(6):  # several requests, so both workers see the outage
            resp = through_nginx(dpop(issuer, "GET", f"{base}/dpop")[0])
            assert resp.status == 500, (resp.status, resp.headers)
            assert echo_upstream.requests == []
            resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", dpop(issuer, "GET", f"{PUBLIC}/dpop")[0])
            assert resp.status == 500
            assert resp.one("X-Auth-Error") == "replay_store_unavailable"
        status, body = readyz(port)
        assert status == 503 and body["ready"] is False
        checks = body["checks"]
        assert isinstance(checks, dict) and "redis" in str(checks["replay_store"]).lower(), checks
        assert checks[f"issuer {issuer.issuer}"] == "ok"

        # Redis back on the same port: the same tokenguard processes recover on their own.
        assert redis_server.port is not None
        restarted = harness.start_redis(tmp_path, port=redis_server.port)
        pids = {tg.popen.pid}

        def recovered() -> bool:
            return all(through_nginx(dpop(issuer, "GET", f"{base}/dpop")[0]).status == 200 for _ in range(4))

        wait_for(recovered, "tokenguard to use the restarted redis-server")
        assert tg.alive() and {tg.popen.pid} == pids
        assert readyz(port)[0] == 200
        headers, _ = dpop(issuer, "GET", f"{base}/dpop")
        assert through_nginx(headers).status == 200
        resp = through_nginx(headers)  # replay protection is back too
        assert resp.status == 401 and resp.one("X-Auth-Error") == "dpop_replay"
    finally:
        nginx.stop()
        if restarted is not None:
            restarted.stop()


# --------------------------------------------------------------------------------------------- serve


def test_serve_refuses_memory_store_with_two_workers(tmp_path: Path, issuer: harness.StubIssuer) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=issuer.issuer, store="memory"
    )
    done = subprocess.run(  # noqa: S603
        harness.tokenguard_command(config, workers=2), capture_output=True, text=True, timeout=120,
        cwd=harness.REPO, start_new_session=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert not harness.port_open(port)
    message = done.stderr
    assert "memory" in message and "2 workers" in message, message
    assert "embedded" in message and "replay" in message.lower(), message


def _workers(master: int) -> set[int]:
    return harness.worker_pids(master)


@pytest.mark.parametrize("engine", ["gunicorn"])  # uvicorn: tests/integration/test_engines.py
def test_sighup_reloads_config_and_keeps_old_one_when_broken(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str
) -> None:
    port = harness.free_port()
    path = tmp_path / "tg.toml"

    def write(routes: str, extra: str = "") -> None:
        harness.tokenguard_config(
            path, port=port, state_dir=tmp_path / "state", issuer=issuer.issuer, routes=routes, extra=extra
        )

    def status(route: str) -> int:
        return harness.auth_subrequest(port, "GET", PUBLIC + route, bearer(issuer)).status

    route_a = '[[route]]\npath = "/a"\nbinding = "any"\n'
    route_b = '[[route]]\npath = "/b"\nbinding = "any"\n'
    write(route_a)
    tg = start_tokenguard(path, port, env={"TOKENGUARD_SERVER_ENGINE": engine})
    master = tg.popen.pid
    assert status("/a") == 200
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/b", bearer(issuer))
    assert resp.status == 403 and resp.one("X-Auth-Error") == "no_route"

    # A valid new config: the new route takes effect without restarting the master, and requests
    # sent meanwhile are all answered (gunicorn replaces the workers gracefully).
    write(route_a + route_b)
    with harness.Hammer(lambda: status("/a")) as hammer:
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: all(status("/b") == 200 for _ in range(4)), "the reloaded config (route /b)")
        wait_for(lambda: "config_reloaded" in tg.log_tail(50_000_000), "the reload log line")
    assert hammer.errors == [] and hammer.answered and set(hammer.answered) == {200}, (hammer.errors[:3],
                                                                                       set(hammer.answered))

    # Broken configs (an unknown key; a memory store with 2 workers), each of which would also drop
    # /b: refused with the reason logged, and the new workers keep serving the last valid config.
    for broken, reason in (("[replay]\nbogus_key = 1\n", "replay.bogus_key: unknown key"),
                           ('[replay]\nstore = "memory"\n', "replay.store: 'memory'")):  # fmt: skip
        before = _workers(master)
        rejections = tg.log_tail(50_000_000).count("config_rejected")
        write(route_a)
        path.write_text(path.read_text().replace('[replay]\nstore = "embedded"\n', broken))
        os.kill(master, signal.SIGHUP)
        wait_for(lambda n=rejections: tg.log_tail(50_000_000).count("config_rejected") > n, "the rejection log line")
        wait_for(lambda old=before: len(_workers(master)) == 2 and not _workers(master) & old, "new workers")
        rejected = [line for line in tg.log_tail(50_000_000).splitlines() if "config_rejected" in line]
        assert reason in rejected[-1], rejected
        for _ in range(6):  # the new workers serve the old (last valid) config: /b still allowed
            assert status("/b") == 200
            assert status("/a") == 200
    assert tg.alive() and tg.popen.pid == master
    assert harness.request("GET", f"http://127.0.0.1:{port}/healthz").status == 200


# ------------------------------------------------------------------------------- issue 10: slow issuers

BUDGET = 1.0  # token.key_wait's default: the most a request may wait on an issuer's network
SLACK = 1.5  # scheduling noise on a small shared machine (today's main made requests wait 6 to 41 s)
PHASE = 1  # whole seconds (wrk) of load per phase; baseline and fault phases alternate ROUNDS times. Other
ROUNDS = 6  # load on a shared machine only ever lowers a phase's rate, so the better halves are compared
METADATA = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration", "/jwks")


def two_issuers(tmp_path: Path, port: int, fast: harness.StubIssuer, slow: harness.StubIssuer,
                **token: object) -> Path:
    """A config trusting `fast` (routes /bearer*, /dpop*) and `slow` (discovered through its metadata)."""
    return harness.tokenguard_config(
        tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state", issuer=fast.issuer, token=token,
        routes=ROUTES, extra=f"[[issuer]]\nissuer = {json.dumps(slow.issuer)}\n",
    )  # fmt: skip


def wrk(port: int, token: str, seconds: int) -> tuple[float, float]:
    """Legitimate load on /auth (one bearer token of a healthy issuer): requests/s and the slowest answer (s)."""
    binary = harness.require_binary("wrk")
    if binary is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    headers = [("X-Original-Method", "GET"), ("X-Original-URI", "/bearer"), ("X-Forwarded-Proto", "https"),
               ("X-Forwarded-Host", "api.example"), ("X-Forwarded-Port", "8443"),
               ("Authorization", f"Bearer {token}")]  # fmt: skip
    argv = [binary, "-t1", "-c4", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    for name, value in headers:
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, f"http://127.0.0.1:{port}/auth"], capture_output=True, text=True,  # noqa: S603
                         timeout=seconds + 60).stdout
    assert "Non-2xx" not in out, out
    rate = float(out.split("Requests/sec:")[1].split()[0])
    latency_max = out.split("Latency")[1].split()[2]
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
    unit = next(u for u in ("us", "ms", "s", "m") if latency_max.endswith(u))
    return rate, float(latency_max[: -len(unit)]) * units[unit]


class Traffic:
    """Requests at `rate` per second, open loop (each in its own thread, however long the others take, as
    clients do), every answer recorded with its latency."""

    def __init__(self, port: int, headers: Callable[[], list[tuple[str, str]]], rate: float = 10.0) -> None:
        self.port, self.headers, self.rate = port, headers, rate
        self.answers: list[tuple[int, str | None, float]] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=64)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self) -> None:
        started = time.monotonic()
        resp = harness.auth_subrequest(self.port, "GET", f"{PUBLIC}/bearer", self.headers())
        self.answers.append((resp.status, resp.one("X-Auth-Error"), time.monotonic() - started))

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._one)
            due += 1 / self.rate
            self._stop.wait(max(0.0, due - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._pool.shutdown(wait=True)


def under_fault(port: int, token: str, traffic: Callable[[], Traffic], figures: Callable[[str, object], None]
                ) -> list[tuple[int, str | None, float]]:
    """Alternate baseline and fault phases; assert the legitimate load kept >= 80 % of its throughput (the
    better half of the fault phases against the better half of the baseline phases) and never waited past
    the budget; return the answers the requests naming the faulty issuer got.

    Other processes on a shared two-core machine can halve a phase's rate, so a measurement below 80 % is
    taken once more; a real stall (today's main lost 95 %) fails every time.
    """
    answers: list[tuple[int, str | None, float]] = []
    for attempt in (1, 2):
        base, faulty, slowest = [], [], 0.0
        for _ in range(ROUNDS):
            rate, _ = wrk(port, token, PHASE)
            base.append(rate)
            with traffic() as running:
                rate, worst = wrk(port, token, PHASE)
            faulty.append(rate)
            slowest = max(slowest, worst)
            answers += running.answers
        baseline = statistics.mean(sorted(base)[ROUNDS // 2:])
        assert baseline > 0, f"the service stopped answering legitimate requests ({base}, {faulty})"
        ratio = statistics.mean(sorted(faulty)[ROUNDS // 2:]) / baseline
        figures(f"baseline req/s (measurement {attempt})", [round(r) for r in base])
        figures(f"under fault req/s (measurement {attempt})", [round(r) for r in faulty])
        figures(f"kept, better halves (measurement {attempt})", f"{ratio:.0%}")
        figures(f"slowest legitimate answer under fault, ms (measurement {attempt})", round(slowest * 1000))
        assert slowest <= BUDGET + SLACK, slowest
        if ratio >= 0.8:
            break
    else:
        raise AssertionError(f"legitimate throughput under fault: {ratio:.0%} of the baseline ({base}, {faulty})")
    worst_faulty = max(latency for _, _, latency in answers)
    figures("requests naming the faulty issuer", len(answers))
    figures("slowest of them (ms)", round(worst_faulty * 1000))
    assert answers and worst_faulty <= BUDGET + SLACK, sorted(a[2] for a in answers)[-5:]
    return answers


@pytest.mark.parametrize("fault", ["never-fetched-slow", "never-fetched-trickling", "cached-then-slow"])
def test_slow_issuer_does_not_stall_other_issuers(
    tmp_path: Path, start_tokenguard: StartTokenguard, figures: Callable[[str, object], None], fault: str
) -> None:
    """Issue 10 item 1: a slow or trickling issuer costs its own requests at most the budget, and the
    other issuers' requests keep >= 80 % of their throughput."""
    fast, slow = harness.StubIssuer(), harness.StubIssuer()
    try:
        port = harness.free_port()

        def turn_slow() -> None:
            if fault.endswith("trickling"):
                slow.trickle_paths, slow.delay = set(METADATA), 0.4
            else:
                slow.slow_paths, slow.delay = set(METADATA), 20.0

        if fault.startswith("never-fetched"):
            turn_slow()
        tg = start_tokenguard(two_issuers(tmp_path, port, fast, slow, jwks_ttl=2, http_timeout=2), port)
        token = fast.token()
        assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(fast)).status == 200
        if fault == "cached-then-slow":
            for _ in range(4):
                assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(slow)).status == 200
            turn_slow()
        answers = under_fault(port, token, lambda: Traffic(port, lambda: bearer(slow)), figures)
        if fault == "cached-then-slow":  # keys cached before the issuer turned slow keep serving
            assert {(status, reason) for status, reason, _ in answers} == {(200, None)}
        else:  # never fetched: refused at once, with the reason
            assert {(status, reason) for status, reason, _ in answers} == {(500, "jwks_unavailable")}
            assert f"issuer {slow.issuer}: no signing keys" in tg.log_tail(2_000_000)
        assert tg.alive()
    finally:
        fast.close()
        slow.close()


def forged(issuer: harness.StubIssuer) -> list[tuple[str, str]]:
    """An unsigned token that passes every check needing no key: configured issuer, alg, typ, exp, kid."""
    import base64
    import uuid

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    header = {"typ": "at+jwt", "alg": "RS256", "kid": f"forged-{uuid.uuid4()}"}
    claims = {"iss": issuer.issuer, "aud": harness.AUDIENCE, "sub": "mallory", "client_id": "c", "iat": now,
              "exp": now + 600, "jti": str(uuid.uuid4())}  # fmt: skip
    return [("Authorization", f"Bearer {part(header)}.{part(claims)}.{part('not a signature')}")]


@pytest.mark.parametrize("state", ["never-fetched", "cached"])
def test_forged_tokens_naming_a_slow_issuer_do_not_stall_others(
    tmp_path: Path, start_tokenguard: StartTokenguard, figures: Callable[[str, object], None], state: str
) -> None:
    """Issue 10 item 1: forged tokens naming a slow configured issuer, 10 per second, are refused at once
    (an unknown kid causes at most one fetch per cool-down on the host) and cost others < 20 %."""
    fast, slow = harness.StubIssuer(), harness.StubIssuer()
    try:
        port = harness.free_port()
        if state == "never-fetched":
            slow.slow_paths, slow.delay = set(METADATA), 20.0
        start_tokenguard(two_issuers(tmp_path, port, fast, slow, jwks_refresh_cooldown=30), port)
        assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(fast)).status == 200
        if state == "cached":
            assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(slow)).status == 200
        slow.slow_paths, slow.delay = set(METADATA), 20.0
        hits = len(slow.hits)
        answers = under_fault(port, fast.token(), lambda: Traffic(port, lambda: forged(slow)), figures)
        expected = (500, "jwks_unavailable") if state == "never-fetched" else (401, "token_unknown_kid")
        assert {(status, reason) for status, reason, _ in answers} == {expected}
        figures("fetches from the slow issuer", len(slow.hits) - hits)
        if state == "cached":
            assert len(slow.hits) - hits <= 1  # one unknown-kid fetch per cool-down, for the whole host
    finally:
        fast.close()
        slow.close()


# ------------------------------------------------------------------ issue 10: keys across reloads, restarts


def _new_workers(master: int, before: set[int]) -> bool:
    now = _workers(master)
    return len(now) == 2 and not now & before


@pytest.mark.parametrize("engine", list(ENGINES))
def test_issuer_down_keys_survive_sighup_and_restart(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard,
    figures: Callable[[str, object], None], engine: str,
) -> None:
    """Issue 10 item 2: keys fetched before the issuer went down keep serving in workers that never
    fetched them: after a SIGHUP (new workers) and after a full restart."""
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES)
    env = {"TOKENGUARD_SERVER_ENGINE": engine}
    tg = start_tokenguard(config, port, env=env)
    assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer)).status == 200
    issuer.close()

    def allowed(n: int = 60) -> int:
        count = 0
        for i in range(n):  # fresh tokens: the validated-token cache cannot help
            headers = bearer(issuer) if i % 2 else dpop(issuer, "GET", f"{PUBLIC}/dpop")[0]
            resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/{'bearer' if i % 2 else 'dpop'}", headers)
            count += resp.status == 200
        return count

    master, before = tg.popen.pid, _workers(tg.popen.pid)
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: _new_workers(master, before), "new workers after SIGHUP")
    wait_for(lambda: "config_reloaded" in tg.log_tail(2_000_000), "the reload")
    after_sighup = allowed()
    figures("allowed after SIGHUP, issuer down", f"{after_sighup}/60")
    assert after_sighup == 60, tg.log_tail()

    tg.stop()
    tg = start_tokenguard(config, port, env=env)
    after_restart = allowed()
    figures("allowed after a restart, issuer down", f"{after_restart}/60")
    assert after_restart == 60, tg.log_tail()
    status, body = readyz(port)
    assert status == 200 and body["checks"] == {f"issuer {issuer.issuer}": "ok", "replay_store": "ok"}


def test_keys_older_than_max_stale_fail_closed_and_readyz_says_so(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES,
                                       token={"jwks_ttl": 1, "jwks_max_stale": 4})  # fmt: skip
    tg = start_tokenguard(config, port)
    assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer)).status == 200
    issuer.close()
    tg.stop()
    tg = start_tokenguard(config, port)  # a restart: the keys come from the state directory only

    def refused() -> bool:
        return harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer)).status != 200

    wait_for(refused, "the persisted keys to pass jwks_max_stale")
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", bearer(issuer))
    assert resp.status == 500 and resp.one("X-Auth-Error") == "jwks_unavailable"
    status, body = readyz(port)
    check = str(body["checks"][f"issuer {issuer.issuer}"])  # type: ignore[index]
    assert status == 503 and "jwks_max_stale" in check and issuer.issuer in check, body
    assert "jwks_max_stale" in tg.log_tail()  # the decision line's detail says why


# --------------------------------------------------------------------------- issue 10: reloads, last good


@pytest.mark.parametrize("engine", list(ENGINES))
def test_reload_that_could_not_serve_is_refused_and_the_old_config_kept(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str
) -> None:
    """Issue 10 item 6: a config that validates but would kill every worker (a bad log level on today's
    main, an unreadable secret file, a replay store that cannot be opened) is refused on SIGHUP; the
    service keeps serving the config in force, and a good config is applied afterwards."""
    port = harness.free_port()
    path = tmp_path / "tg.toml"
    route_a = '[[route]]\npath = "/a"\nbinding = "any"\n'
    route_b = '[[route]]\npath = "/b"\nbinding = "any"\n'

    def write(routes: str, replace: tuple[str, str] = ("", "")) -> None:
        harness.tokenguard_config(path, port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
                                  routes=routes)
        path.write_text(path.read_text().replace(*replace))

    def status(route: str) -> int:
        return harness.auth_subrequest(port, "GET", PUBLIC + route, bearer(issuer)).status

    write(route_a)
    tg = start_tokenguard(path, port, env={"TOKENGUARD_SERVER_ENGINE": engine})
    master = tg.popen.pid
    broken = {
        "log level": (("[server]\n", '[server]\nlog_level = "loud"\n'), "server.log_level"),
        "secret file": (("[replay]", f'[dpop]\nnonce_secret_file = "{tmp_path}/absent"\n[replay]'),
                        "dpop.nonce_secret_file"),
    }
    for name, (replace, reason) in broken.items():
        rejections = tg.log_tail(50_000_000).count("config_rejected")
        write(route_a + route_b, replace)
        os.kill(master, signal.SIGHUP)
        wait_for(lambda n=rejections: tg.log_tail(50_000_000).count("config_rejected") > n, f"{name}: rejection")
        rejected = [line for line in tg.log_tail(50_000_000).splitlines() if "config_rejected" in line]
        assert reason in json.loads(rejected[-1])["error"], rejected[-1]
        for _ in range(6):  # the config in force still serves: /a allowed, /b has no route
            assert status("/a") == 200
            assert status("/b") == 403
        assert tg.alive() and tg.popen.pid == master, name
        assert harness.request("GET", f"http://127.0.0.1:{port}/healthz").status == 200
    write(route_a + route_b)
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: all(status("/b") == 200 for _ in range(4)), "the good config after the refusals")


# ---------------------------------------------------------------------------------- issue 10: operators


@pytest.mark.parametrize("engine", list(ENGINES))
def test_operators_see_start_requests_and_key_fetch_failures(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str
) -> None:
    """Issue 10 item 8: one JSON line per event, each with a timestamp: where the server listens and what
    it serves; every decision with its request id; every key fetch failure and the recovery, naming the
    issuer and the cause. Never a token."""
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES, token={"jwks_ttl": 1})
    tg = start_tokenguard(config, port, env={"TOKENGUARD_SERVER_ENGINE": engine})
    wait_for(lambda: '"event":"listening"' in tg.log_tail(), "the listening line")
    token = issuer.token()
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer",
                                   [("Authorization", f"Bearer {token}"), ("X-Request-Id", "req-42.a")])
    assert resp.status == 200 and resp.one("X-Request-Id") == "req-42.a"
    hostile = "x" * 129
    resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer",
                                   [("Authorization", f"Bearer {token}"), ("X-Request-Id", hostile)])
    generated = resp.one("X-Request-Id")
    assert generated is not None and len(generated) == 32 and int(generated, 16) >= 0
    evil = issuer.token(iss="https://evil.example/x")
    assert harness.auth_subrequest(port, "GET", f"{PUBLIC}/bearer", [("Authorization", f"Bearer {evil}")]).status == 401

    issuer.close()  # the issuer goes away: the next refreshes fail ...
    wait_for(lambda: '"event":"jwks_fetch_failed"' in tg.log_tail(2_000_000), "a logged fetch failure")
    revived = harness.StubIssuer(port=issuer.port)  # ... and comes back
    try:
        wait_for(lambda: '"event":"jwks_fetch_recovered"' in tg.log_tail(2_000_000), "a logged recovery")
    finally:
        revived.close()
    lines = [json.loads(line) for line in tg.log_tail(2_000_000).splitlines() if line.strip()]
    for line in lines:  # every line, the engine's own included, is JSON with an ISO 8601 UTC timestamp
        assert line["ts"].endswith("Z") and line["ts"][10] == "T" and line["level"], line
    (listening,) = [line for line in lines if line.get("event") == "listening"]
    assert listening["listen"] == f"127.0.0.1:{port}" and "listening on" in listening["message"]
    assert listening["engine"] == engine and listening["workers"] == 2 and listening["store"] == "embedded"
    assert listening["issuers"] == [issuer.issuer] and listening["version"]
    # Two workers write their lines in batches of their own: the file's order is not the requests' order.
    decisions = {line["request_id"]: line for line in lines if line.get("event") == "decision"}
    assert decisions["req-42.a"]["result"] == "allow" and decisions[generated]["result"] == "allow"
    (unknown,) = [d for d in decisions.values() if d["reason"] == "token_unknown_issuer"]
    assert "https://evil.example/x" in unknown["detail"]
    failure = next(line for line in lines if line.get("event") == "jwks_fetch_failed")
    assert failure["issuer"] == issuer.issuer and issuer.issuer in failure["error"]
    recovery = next(line for line in lines if line.get("event") == "jwks_fetch_recovered")
    assert recovery["issuer"] == issuer.issuer and recovery["after_failures"] >= 1
    text = tg.log_tail(2_000_000)
    assert token.split(".")[1] not in text and evil.split(".")[1] not in text and hostile not in text
