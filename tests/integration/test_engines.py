"""Every serving engine (`server.engine`, `tokenguard.serving.ENGINES`) as a black box: `tokenguard serve`
verifies, shares the replay store across its workers, and keeps the request-integrity guarantees --
header names exactly as sent, no process environment in a request, no forwarded-header trust of its own.
The default engine's SIGHUP reload is tested through the shipped nginx config: a good config applied, a
broken one refused with the old one in force, and no request dropped meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
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
PUBLIC = "https://api.example"
ROUTES = """
[[route]]
path = "/dpop*"
binding = "dpop"
[[route]]
path = "/auth"
binding = "dpop"
"""


@pytest.fixture
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


def _serve(tmp_path: Path, issuer: harness.StubIssuer, start: StartTokenguard, engine: str, *, extra: str = "",
           env: dict[str, str] | None = None) -> tuple[int, harness.ManagedProcess]:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES, extra=extra)
    return port, start(config, port, env={"TOKENGUARD_SERVER_ENGINE": engine, **(env or {})})


def _dpop(issuer: harness.StubIssuer, htu: str) -> tuple[dict[str, object], str, str]:
    key = harness.dpop_key()
    token = issuer.token(cnf={"jkt": str(key["jkt"])})
    return key, token, create_proof(key["jwk"], htm="GET", htu=htu, access_token=token)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_engine_verifies_and_every_worker_refuses_a_replay(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str) -> None:
    port, tg = _serve(tmp_path, issuer, start_tokenguard, engine)
    key, token, proof = _dpop(issuer, f"{PUBLIC}/dpop")
    headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
    first = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", headers)
    assert first.status == 200, first.one("X-Auth-Error")
    assert first.one("X-Auth-Jkt") == key["jkt"]

    def replay() -> tuple[int, str | None]:
        resp = harness.auth_subrequest(port, "GET", f"{PUBLIC}/dpop", headers)
        return resp.status, resp.one("X-Auth-Error")

    def refused_by() -> set[int]:
        counters = harness.worker_counters(tmp_path / "state", tg.popen.pid)
        return {pid for pid, c in counters.items() if c.get(("tokenguard_decisions_total", ("dpop_replay", "deny")))}

    answers: list[tuple[int, str | None]] = []

    def burst() -> bool:  # concurrent connections: the kernel hands them to both workers
        with ThreadPoolExecutor(8) as pool:
            answers.extend(pool.map(lambda _n: replay(), range(16)))
        return len(refused_by()) == 2

    wait_for(burst, "both workers to refuse the replayed proof")
    assert set(answers) == {(401, "dpop_replay")}
    metrics = harness.request("GET", f"http://127.0.0.1:{port}/metrics")
    assert metrics.status == 200
    replays = f'tokenguard_decisions_total{{reason="dpop_replay",result="deny"}} {float(len(answers))}'
    assert replays in metrics.body.decode()


@pytest.mark.parametrize("engine", list(ENGINES))
def test_engine_does_not_trust_forwarded_headers_itself(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str) -> None:
    """Only `trusted_proxies` decide: from an untrusted loopback peer, `X-Forwarded-Proto: https` must not make
    the request https (gunicorn's default `forwarded_allow_ips` would set the WSGI scheme from it)."""
    port, _ = _serve(tmp_path, issuer, start_tokenguard, engine,
                     env={"TOKENGUARD_SERVER_TRUSTED_PROXIES": "10.0.0.0/8"})
    for scheme, status in (("https", 401), ("http", 200)):  # the request's own Host: 127.0.0.1:<port>
        _, token, proof = _dpop(issuer, f"{scheme}://127.0.0.1:{port}/auth")
        resp = harness.request("GET", f"http://127.0.0.1:{port}/auth", headers=[
            ("X-Forwarded-Proto", "https"), ("Authorization", f"DPoP {token}"), ("DPoP", proof)])
        assert resp.status == status, (scheme, resp.one("X-Auth-Error"))
        if status == 401:
            assert resp.one("X-Auth-Error") == "dpop_htu_mismatch"


@pytest.mark.parametrize("engine", list(ENGINES))
def test_underscore_twin_is_never_the_forwarded_header(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str) -> None:
    """`X_Forwarded_Proto` is not `X-Forwarded-Proto` (granian's WSGI mode made them one environ key)."""
    port, _ = _serve(tmp_path, issuer, start_tokenguard, engine)
    _, token, proof = _dpop(issuer, "https://api.example/dpop")
    resp = harness.request("GET", f"http://127.0.0.1:{port}/auth", headers=[
        ("X-Original-Method", "GET"), ("X-Original-URI", "/dpop"), ("X-Forwarded-Host", "api.example"),
        ("X_Forwarded_Proto", "https"), ("Authorization", f"DPoP {token}"), ("DPoP", proof)])
    # uvicorn hands the name over as sent and tokenguard refuses the spelling; gunicorn drops it, so the
    # request is judged as http and the https proof does not match. Never an allow either way.
    expected = "underscore_header" if engine == "uvicorn" else "dpop_htu_mismatch"
    assert resp.status == 401 and resp.one("X-Auth-Error") == expected


@pytest.mark.parametrize("engine", list(ENGINES))
def test_process_environment_never_reaches_a_request(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard, engine: str) -> None:
    """The server's own environment is not part of any request (granian's WSGI mode copied all of it into
    every environ, so `RAW_URI` became every request's target)."""
    leak = {"RAW_URI": "/envoy/elsewhere", "REQUEST_URI": "/envoy/elsewhere", "HTTP_X_FORWARDED_PROTO": "http",
            "HTTP_AUTHORIZATION": "Bearer leaked"}
    port, _ = _serve(tmp_path, issuer, start_tokenguard, engine, env=leak)
    _, token, proof = _dpop(issuer, "https://api.example/dpop")
    resp = harness.request("GET", f"http://127.0.0.1:{port}/envoy/dpop", headers=[
        ("X-Forwarded-Host", "api.example"), ("X-Forwarded-Proto", "https"), ("Authorization", f"DPoP {token}"),
        ("DPoP", proof)])
    assert resp.status == 200, resp.one("X-Auth-Error")
    anonymous = harness.request("GET", f"http://127.0.0.1:{port}/envoy/dpop")
    assert anonymous.status == 401 and anonymous.one("X-Auth-Error") == "no_credentials"


@pytest.mark.parametrize("engine", list(ENGINES))
def test_workers_that_cannot_start_stop_the_server_with_the_reason(
        tmp_path: Path, issuer: harness.StubIssuer, engine: str) -> None:
    """A replay store a worker cannot open (here: a Redis Cluster with no reachable node, which a valid
    config names) would fail every worker at boot: the server exits non-zero, bounded, with the reason in
    one line, instead of respawning workers forever or serving without a store."""
    port, closed = harness.free_port(), harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, store=f"redis+cluster://127.0.0.1:{closed}",
                                       routes=ROUTES)
    done = subprocess.run(harness.tokenguard_command(config), capture_output=True, text=True, timeout=120,
                          cwd=harness.REPO, start_new_session=True,
                          env={**os.environ, "TOKENGUARD_SERVER_ENGINE": engine})
    assert done.returncode != 0, done.stderr[-2000:]
    assert not harness.port_open(port)
    assert "replay_store_unavailable" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


# ------------------------------------------------------------------------------------ SIGHUP, default engine


def _uvicorn_workers(master: int) -> set[int]:
    return harness.worker_pids(master)


def test_sighup_on_the_default_engine_through_nginx_drops_nothing(
        tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard,
        tls_material: harness.TLSMaterial, echo_upstream: harness.ThreadedServer) -> None:
    """good -> broken -> good: the new config applies, the broken one is refused (its reason logged, no
    worker replaced, the old config in force), and every request sent meanwhile through nginx is answered."""
    if harness.require_binary("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    from tokenguard.settings.schema import ServerSettings

    assert ServerSettings.engine == "uvicorn"
    port = harness.free_port()
    path = tmp_path / "tg.toml"

    def write(routes: str, extra: str = "") -> None:
        harness.tokenguard_config(path, port=port, state_dir=tmp_path / "state", issuer=issuer.issuer,
                                  routes=routes, extra=extra)

    route_a = '[[route]]\npath = "/a"\nbinding = "any"\n'
    route_b = '[[route]]\npath = "/b"\nbinding = "any"\n'
    write(route_a)
    tg = start_tokenguard(path, port)
    master = tg.popen.pid
    listen = harness.free_port()
    ports = harness.NginxPorts(listen, port, echo_upstream.port, harness.free_port(), echo_upstream.port)
    nginx = harness.start_nginx(tmp_path / "nginx", ports, tls_material)
    base = f"https://localhost:{listen}"
    bearer = [("Authorization", f"Bearer {issuer.token()}")]

    def status(route: str) -> int:
        return harness.request("GET", base + route, headers=bearer, ca=tls_material.ca_path).status

    try:
        assert status("/a") == 200 and status("/b") == 403
        with harness.Hammer(lambda: status("/a"), threads=3) as hammer:
            workers = _uvicorn_workers(master)
            assert len(workers) == 2
            write(route_a + route_b)
            os.kill(master, signal.SIGHUP)
            wait_for(lambda: all(status("/b") == 200 for _ in range(6)), "the reloaded config (route /b)")
            wait_for(lambda: not _uvicorn_workers(master) & workers, "both workers replaced")
            reloaded = _uvicorn_workers(master)
            rejections = tg.log_tail(50_000_000).count("config_rejected")
            write(route_a)  # and broken: it would also drop /b
            path.write_text(path.read_text().replace('[replay]\nstore = "embedded"\n', "[replay]\nbogus_key = 1\n"))
            os.kill(master, signal.SIGHUP)
            wait_for(lambda: tg.log_tail(50_000_000).count("config_rejected") > rejections, "the rejection log line")
            rejected = [line for line in tg.log_tail(50_000_000).splitlines() if "config_rejected" in line]
            assert "replay.bogus_key: unknown key" in rejected[-1], rejected
            for _ in range(6):
                assert status("/b") == 200  # the config in force stays
            assert _uvicorn_workers(master) == reloaded  # a refused config replaces no worker
        assert hammer.errors == [], hammer.errors[:3]
        assert hammer.answered and set(hammer.answered) == {200}, set(hammer.answered)
        write(route_b)  # valid again, and without /a
        os.kill(master, signal.SIGHUP)
        wait_for(lambda: status("/a") == 403, "the third config")
        assert tg.alive() and tg.popen.pid == master
    finally:
        nginx.stop()
