"""Fault tests against the real service: `tokenguard serve` (gunicorn, 2 workers), a stub issuer that can
go down or slow, real redis-server that is stopped and restarted, the shipped nginx config in front.

Issue 3's fault bullets: cached keys survive an IdP outage; no keys ever -> fail closed with a reason;
Redis down -> fail closed and /readyz says so, Redis back -> recovery without a restart; slow JWKS and
introspection bounded by `[token] http_timeout`; `memory` store refused with 2 workers; SIGHUP reload
(new config applied, a broken one refused with the old one kept in force). No timing assertions
beyond generous "it did not hang" bounds; every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import harness
import pytest
from support import wait_for

from tokenguard.core.dpop import create_proof

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
    """Live children of the gunicorn master (its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[1]) == master:
                found.add(int(entry.name))
    return found


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
    answered: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                answered.append(status("/a"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: all(status("/b") == 200 for _ in range(4)), "the reloaded config (route /b)")
        wait_for(lambda: "config_reloaded" in tg.log_tail(50_000_000), "the reload log line")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == [] and answered and set(answered) == {200}, (errors[:3], set(answered))

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
