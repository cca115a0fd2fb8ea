"""Attacker-chosen cache entries cannot grow a worker (issue 9 item 6).

20,000 requests straight at ``tokenguard serve`` (2 workers, every engine): 10,000 with unique 4 KB
original URIs and no credentials, then 10,000 allowed DPoP requests with unique URIs and unique ~7 KB
proof headers (the padding alternately in the JOSE header and in its ``jwk``), each signed by the key
the token is bound to. Each worker's resident memory may grow by at most :data:`RSS_BOUND_MIB` between
a 50-request warm-up and the end of the run. Before the fix the same traffic grew each worker by
~73 MiB (gunicorn and granian, at 96787eb); now by 5-6 MiB, the caches filling their byte budgets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tokenguard.core.b64 import b64url_encode
from tokenguard.core.dpop import ath_for
from tokenguard.core.jwk import thumbprint
from tokenguard.serving import ENGINES

pytestmark = pytest.mark.integration

#: The bound chosen: the caches' byte budgets together are 11 MiB (DPoP headers 4, keys 4, validated targets 1,
#: route memo 1, htu 1; entry sizes are generous estimates), plus 5 MiB of allocator slack.
RSS_BOUND_MIB = 16
REQUESTS_PER_PHASE = 10_000
WARM_UP = 50  # first requests load what every request uses (keys, the replay store's connection)
PUBLIC = "https://api.test"
ROUTES = """
[[route]]
name = "dpop"
path = "/dpop/*"
binding = "dpop"
[[route]]
name = "catch-all"
path = "*"
binding = "any"
"""


@pytest.fixture(scope="module")
def issuer() -> Iterator[harness.StubIssuer]:
    stub = harness.StubIssuer()
    yield stub
    stub.close()


class Signer:
    """An ES256 key that signs DPoP proofs with any header members (RFC 9449 §4.2, raw R‖S)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64url_encode(numbers.x.to_bytes(32, "big")),
                    "y": b64url_encode(numbers.y.to_bytes(32, "big"))}

    def proof(self, htu: str, token: str, n: int) -> str:
        pad = uuid.uuid4().hex * 150  # 4,800 characters: a ~6.5 KB header, unique per request
        jwk = {**self.jwk, "pad": pad} if n % 2 else self.jwk
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, **({} if n % 2 else {"pad": pad})}
        claims = {"jti": uuid.uuid4().hex, "htm": "GET", "htu": htu, "iat": int(time.time()),
                  "ath": ath_for(token)}
        signing_input = (b64url_encode(json.dumps(header).encode()) + "." +
                         b64url_encode(json.dumps(claims).encode()))
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return signing_input + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _workers(master: int) -> list[int]:
    return sorted(harness.worker_pids(master))


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_unique_uris_and_proof_headers_leave_worker_memory_bounded(tmp_path: Path, issuer: harness.StubIssuer,
                                                                   engine: str) -> None:
    port = harness.free_port()
    config = harness.tokenguard_config(tmp_path / "tg.toml", port=port, state_dir=tmp_path / "state",
                                       issuer=issuer.issuer, routes=ROUTES)
    process = harness.start_tokenguard(config, port, tmp_path / "logs", workers=2, env={
        "TOKENGUARD_SERVER_ENGINE": engine, "TOKENGUARD_SERVER_LOG_DECISIONS": "false"})
    signer = Signer()
    token = issuer.token(cnf={"jkt": thumbprint(signer.jwk)})
    statuses: dict[int, int] = {}

    def send(uri: str, credentials: str = "") -> int:
        """One nginx-style sub-request, written directly: the client must not be the bottleneck."""
        data = (f"GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Original-Method: GET\r\nX-Original-URI: {uri}\r\n"
                f"X-Forwarded-Proto: https\r\nX-Forwarded-Host: api.test\r\nX-Forwarded-Port: 443\r\n"
                f"{credentials}Connection: close\r\n\r\n").encode()
        return harness.raw_request(port, data).status

    def unique_uri(n: int) -> int:
        return send(f"/u/{uuid.uuid4().hex}/" + "a" * 4000 + f"?n={n}")

    def unique_proof(n: int) -> int:
        path = f"/dpop/{uuid.uuid4().hex}"
        return send(path, f"Authorization: DPoP {token}\r\nDPoP: {signer.proof(PUBLIC + path, token, n)}\r\n")

    def run(job: object, count: int) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            for status in pool.map(job, range(count)):  # type: ignore[arg-type]
                statuses[status] = statuses.get(status, 0) + 1

    try:
        run(unique_uri, WARM_UP)
        run(unique_proof, WARM_UP)
        workers = _workers(process.popen.pid)
        assert len(workers) == 2, workers
        before = {pid: _rss_kib(pid) for pid in workers}
        statuses.clear()
        run(unique_uri, REQUESTS_PER_PHASE)
        run(unique_proof, REQUESTS_PER_PHASE)
        after = {pid: _rss_kib(pid) for pid in workers}
    finally:
        process.stop()
    assert statuses == {401: REQUESTS_PER_PHASE, 200: REQUESTS_PER_PHASE}, statuses  # all decided, DPoP allowed
    growth_mib = {pid: (after[pid] - before[pid]) / 1024 for pid in workers}
    print(f"{engine}: RSS before {before} KiB, after {after} KiB, growth {growth_mib} MiB")
    assert all(growth < RSS_BOUND_MIB for growth in growth_mib.values()), growth_mib
