"""Issue 10, items 3-5, against the real service (`tokenguard serve`, 2 gunicorn workers) and real
redis-server: a replay store that cannot silently forget.

* Redis under ``volatile-lru`` / ``allkeys-lru``: refused at start; with ``replay.allow_eviction`` a warning
  at every start; a policy changed at runtime shows in ``/readyz``.
* Redis restarted empty, FLUSHALL; the embedded store damaged at start and while running: no proof
  accepted before the reset is ever accepted after it, ``/readyz`` says "reset at …" until the guard has
  passed, and fresh proofs are accepted after it.
* The embedded store at its cap: 0 requests allowed beyond it, ``replay_store_full`` in ``/readyz`` and
  ``/metrics``.

Each test prints the figures it measured (``-s`` shows them).
"""

from __future__ import annotations

import http.client
import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
import pytest
import redis
from support import wait_for

from tokenguard.core.dpop import create_proof

pytestmark = pytest.mark.integration

StartTokenguard = Callable[..., harness.ManagedProcess]
PUBLIC = "https://api.example:8443"
URL = f"{PUBLIC}/dpop"
ROUTES = '[[route]]\npath = "/dpop*"\nbinding = "dpop"\n'


@pytest.fixture
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


class Client:
    """One DPoP key and a token bound to it; every call signs a new proof unless one is given."""

    def __init__(self, issuer: harness.StubIssuer, port: int) -> None:
        key = harness.dpop_key()
        self.jwk = key["jwk"]
        self.token = issuer.token(cnf={"jkt": str(key["jkt"])})
        self.port = port

    def proof(self, iat: float | None = None) -> str:
        return create_proof(self.jwk, htm="GET", htu=URL, access_token=self.token, iat=iat)  # type: ignore[arg-type]

    def call(self, proof: str | None = None, port: int | None = None) -> harness.Response:
        headers = [("Authorization", f"DPoP {self.token}"), ("DPoP", proof or self.proof())]
        try:
            return harness.auth_subrequest(port or self.port, "GET", URL, headers)
        except (http.client.HTTPException, ConnectionError):
            # Garbage under a live LMDB map may kill the worker (SIGBUS): it acknowledged nothing, and the
            # proxy would answer 502. Counted as its own outcome, never as an allow.
            return harness.Response(502, [("X-Auth-Error", "worker_crashed")], b"")


def outcomes(responses: list[harness.Response]) -> Counter[str]:
    """X-Auth-Error per response ("allowed" for a 200)."""
    return Counter("allowed" if r.status == 200 else str(r.one("X-Auth-Error")) for r in responses)


def readyz(port: int) -> tuple[int, dict[str, str]]:
    resp = harness.request("GET", f"http://127.0.0.1:{port}/readyz")
    return resp.status, json.loads(resp.body)["checks"]


def accept(client: Client, n: int) -> list[str]:
    """``n`` proofs, each accepted once (the state before the fault)."""
    proofs = [client.proof() for _ in range(n)]
    results = [client.call(p) for p in proofs]
    assert outcomes(results) == {"allowed": n}, outcomes(results)
    return proofs


def assert_never_replayed(client: Client, proofs: list[str], port: int | None = None) -> Counter[str]:
    """Every pre-fault proof is refused: as a replay, by the reset's epoch, or because the store is down."""
    seen = outcomes([client.call(p, port) for p in proofs])
    assert "allowed" not in seen, seen
    assert set(seen) <= {"dpop_replay", "replay_store_reset", "replay_store_unavailable", "worker_crashed"}, seen
    return seen


def store_ready(port: int) -> bool:
    return readyz(port)[1].get("replay_store") == "ok"


def start_redis(tmp: Path, port: int | None = None, *args: str) -> harness.ManagedProcess:
    if harness.require_binary("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    proc = harness.start_redis(tmp, port)
    if args:
        client = redis.Redis(port=proc.port, socket_timeout=5)
        for name, value in zip(args[::2], args[1::2], strict=True):
            client.config_set(name, value)
        client.close()
    return proc


def config(tmp: Path, port: int, issuer: harness.StubIssuer, store: str = "embedded", replay: str = "") -> Path:
    return harness.tokenguard_config(tmp / "tg.toml", port=port, state_dir=tmp / "state", issuer=issuer.issuer,
                                     store=store, routes=ROUTES, extra=replay)


# ------------------------------------------------------------------------------------- Redis eviction


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_redis_that_evicts_is_refused_at_start(tmp_path: Path, issuer: harness.StubIssuer, policy: str) -> None:
    """Issue 10 item 3: under an evicting policy a full Redis dropped the jti keys and 100/100 replays were
    allowed. Now `serve` refuses to start and says why; nothing listens."""
    redis_proc = start_redis(tmp_path, None, "maxmemory", "2mb", "maxmemory-policy", policy)
    port = harness.free_port()
    path = config(tmp_path, port, issuer, store=f"redis://127.0.0.1:{redis_proc.port}/0")
    try:
        done = subprocess.run(harness.tokenguard_command(path), capture_output=True, text=True, timeout=120,
                              cwd=harness.REPO, start_new_session=True)
    finally:
        redis_proc.stop()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert f"maxmemory-policy {policy}" in done.stderr and "noeviction" in done.stderr, done.stderr
    assert "replay.allow_eviction" in done.stderr
    assert not harness.port_open(port)


def test_redis_eviction_allowed_on_purpose_warns_at_every_start(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    redis_proc = start_redis(tmp_path, None, "maxmemory", "64mb", "maxmemory-policy", "volatile-lru")
    port = harness.free_port()
    path = config(tmp_path, port, issuer, store=f"redis://127.0.0.1:{redis_proc.port}/0",
                  replay="allow_eviction = true\n")
    try:
        for start in range(2):
            tg = start_tokenguard(path, port)
            wait_for(lambda tg=tg: "maxmemory-policy volatile-lru" in tg.log_tail(), "the eviction warning")
            assert "allowed by replay.allow_eviction" in tg.log_tail()
            client = Client(issuer, port)
            proof = client.proof()
            assert outcomes([client.call(proof), client.call(proof)]) == {"allowed": 1, "dpop_replay": 1}
            tg.stop()
            print(f"start {start + 1}: warned, served")
    finally:
        redis_proc.stop()


@dataclass
class RedisService:
    """tokenguard (2 workers) on a fresh redis-server; ``redis`` is replaced when a test restarts it."""

    redis: harness.ManagedProcess
    port: int
    client: Client


@pytest.fixture
def redis_service(tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard) -> Iterator[
        RedisService]:
    port = harness.free_port()
    service = RedisService(start_redis(tmp_path), port, Client(issuer, port))
    try:
        start_tokenguard(config(tmp_path, port, issuer, store=f"redis://127.0.0.1:{service.redis.port}/0"), port)
        yield service
    finally:
        service.redis.stop()


def test_redis_policy_changed_at_runtime_shows_in_readyz(redis_service: RedisService) -> None:
    assert readyz(redis_service.port)[0] == 200
    redis.Redis(port=redis_service.redis.port).config_set("maxmemory-policy", "allkeys-lru")
    status, checks = readyz(redis_service.port)
    assert status == 503 and "maxmemory-policy allkeys-lru" in checks["replay_store"], checks


# ------------------------------------------------------------------------------------- resets


def _reset_and_recover(port: int, client: Client, proofs: list[str], what: str) -> None:
    """After the reset: no pre-reset proof allowed, /readyz says "reset at …", then fresh proofs allowed."""
    refused = assert_never_replayed(client, proofs)
    print(f"{what}: {len(proofs)} pre-reset proofs replayed -> {dict(refused)}")
    started = time.monotonic()
    wait_for(lambda: store_ready(port), "the reset guard to pass", timeout=90)
    waited = time.monotonic() - started
    assert_never_replayed(client, proofs)  # still never, also after the guard
    fresh = [client.call() for _ in range(10)]
    assert outcomes(fresh) == {"allowed": 10}, outcomes(fresh)
    print(f"{what}: /readyz back to ok after {waited:.1f} s; 10/10 fresh proofs allowed")


def test_redis_restarted_empty_never_allows_a_pre_reset_proof(tmp_path: Path, redis_service: RedisService) -> None:
    """Issue 10 item 4 (Redis): restarted without persistence, it forgot every jti: the replays were allowed."""
    proofs = accept(redis_service.client, 40)
    redis_service.redis.stop()
    redis_service.redis = start_redis(tmp_path, redis_service.redis.port)
    status, checks = readyz(redis_service.port)
    assert status == 503 and "reset at" in checks["replay_store"], checks
    _reset_and_recover(redis_service.port, redis_service.client, proofs, "redis restarted empty")


def test_redis_flushall_never_allows_a_pre_reset_proof(redis_service: RedisService) -> None:
    proofs = accept(redis_service.client, 40)
    redis.Redis(port=redis_service.redis.port).flushall()
    _reset_and_recover(redis_service.port, redis_service.client, proofs, "FLUSHALL")


def _damage(state: Path) -> list[str]:
    """Garbage over every replay store file in the state directory (whatever the engine)."""
    damaged = []
    for path in sorted(state.rglob("*")):
        if path.is_file() and path.name.startswith(("replay", "data.mdb")) and path.stat().st_size:
            size = min(path.stat().st_size, 1 << 20)
            with path.open("r+b") as handle:
                handle.write(random.Random(7).randbytes(size))
            damaged.append(path.name)
    assert damaged, sorted(p.name for p in state.rglob("*"))
    return damaged


def test_embedded_damaged_at_start_never_allows_a_pre_reset_proof(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    """Issue 10 item 4: the damaged file was renamed *.corrupt with no log line and 100/100 replays were
    allowed. Now the store is moved aside with a warning, a new epoch begins, and none is allowed."""
    port = harness.free_port()
    path = config(tmp_path, port, issuer)
    tg = start_tokenguard(path, port)
    client = Client(issuer, port)
    proofs = accept(client, 40)
    tg.stop()
    damaged = _damage(tmp_path / "state")
    tg = start_tokenguard(path, port, settle=False)
    log = tg.log_tail(100_000)
    assert "moved aside" in log and "created" in log, log
    assert any(line for line in log.splitlines() if "replay store" in line and "epoch" in line), log
    print(f"damaged {damaged}; restart logged the reset")
    _reset_and_recover(port, client, proofs, "embedded store damaged at start")


def test_embedded_damaged_while_running_fails_closed_then_recovers(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    """Damaged under running workers: fail closed (never an allow of a replay), then a new store and epoch
    without a restart (before, it stayed down until someone fixed the file)."""
    port = harness.free_port()
    start_tokenguard(config(tmp_path, port, issuer), port)
    client = Client(issuer, port)
    proofs = accept(client, 40)
    data = tmp_path / "state" / "replay" / "data.mdb"
    size = data.stat().st_size
    with data.open("r+b") as handle:  # every page but LMDB's two meta pages
        handle.seek(8192)
        handle.write(b"\xff" * min(size - 8192, 1 << 20))
    time.sleep(0.3)  # past the per-process identity check interval
    fresh = outcomes([client.call() for _ in range(6)])  # failed closed (or, once recovered, guarded)
    assert set(fresh) <= {"replay_store_unavailable", "replay_store_reset", "worker_crashed"}, fresh
    replayed = assert_never_replayed(client, proofs[:10])
    print(f"damaged while running: fresh {dict(fresh)}, replays {dict(replayed)}")
    _reset_and_recover(port, client, proofs, "embedded store damaged while running")


# ------------------------------------------------------------------------------------- the cap


def test_embedded_store_at_its_cap_allows_nothing_beyond_it(
    tmp_path: Path, issuer: harness.StubIssuer, start_tokenguard: StartTokenguard
) -> None:
    """Issue 10 item 5: 4,995 of 5,000 requests over the cap were allowed. Now exactly the cap."""
    port = harness.free_port()
    start_tokenguard(config(tmp_path, port, issuer, replay="max_entries = 60\n"), port)
    client = Client(issuer, port)
    first = outcomes([client.call() for _ in range(60)])
    beyond = [client.call() for _ in range(100)]
    assert first == {"allowed": 60}, first
    assert outcomes(beyond) == {"replay_store_full": 100}, outcomes(beyond)
    assert {r.status for r in beyond} == {500}
    status, checks = readyz(port)
    assert status == 503 and "60 of 60" in checks["replay_store"], checks
    scraped = harness.request("GET", f"http://127.0.0.1:{port}/metrics")
    body = scraped.body.decode()
    assert scraped.status == 200, (scraped.status, scraped.headers)
    assert 'tokenguard_replay_store_state{state="full"} 1.0' in body, body[-3000:]
    assert "tokenguard_replay_store_entries 60.0" in body
    assert 'tokenguard_decisions_total{reason="replay_store_full",result="error"} 100.0' in body
    print("cap 60: 60 allowed, 0 of 100 beyond it allowed (replay_store_full), /readyz 503, /metrics full")
