"""Core micro-benchmark: full verification of a DPoP-bound JWT request vs the raw signature floor.

In one run it measures (a) the floor: one ES256 proof verify plus one RS256 access-token verify with
``cryptography`` alone, and (b) ``Verifier.decide`` on a DPoP-bound request with a fresh proof each
time and the replay store on, for each replay store; it prints µs per request and the ratio to (a).
Proofs are generated before the timed loop. For Redis it also times one bare ``SET NX PX`` round trip
with the same client library, so "the Redis row adds one round trip and nothing else" can be read off:
full(redis) - full(memory) against that round trip. Usage: ``python scripts/bench_core.py [-n 3000]``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwk, jwt

from tokenguard.core.access_token import AccessTokenValidator, Issuer
from tokenguard.core.dpop import DpopVerifier, create_proof
from tokenguard.core.jwks import JwksCache
from tokenguard.core.nonce import RS_LABEL, NonceIssuer
from tokenguard.core.policy import Policy, Route
from tokenguard.core.replay import ReplayStore
from tokenguard.core.replay.embedded import EmbeddedReplayStore
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.replay.redis import RedisReplayStore
from tokenguard.core.request import AuthRequest
from tokenguard.core.verifier import Verifier
from tokenguard.settings.wiring import core_bindings

ISS, AUD, URL = "https://as.test", "https://api.test", "https://api.test/resource"


class Floor:
    """One raw ES256 verify plus one raw RS256 verify with ``cryptography`` alone (the unavoidable crypto)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        ec_key = ec.generate_private_key(ec.SECP256R1())
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.data = b"x" * 600
        r, s = decode_dss_signature(ec_key.sign(self.data, ec.ECDSA(hashes.SHA256())))
        self.raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        self.rsa_sig = rsa_key.sign(self.data, padding.PKCS1v15(), hashes.SHA256())
        self.ec_pub, self.rsa_pub = ec_key.public_key(), rsa_key.public_key()

    def once(self) -> float:
        t = time.perf_counter()
        raw = self.raw
        self.ec_pub.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                           self.data, ec.ECDSA(hashes.SHA256()))
        self.rsa_pub.verify(self.rsa_sig, self.data, padding.PKCS1v15(), hashes.SHA256())
        return time.perf_counter() - t


def build(store: ReplayStore) -> tuple[Verifier, str, dict]:
    as_key = jwk.generate_key("RSA", 2048, parameters={"kid": "as-1"}, private=True)
    client = jwk.generate_key("EC", "P-256", private=True)
    now = int(time.time())
    token = jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "as-1"},
                       {"iss": ISS, "aud": AUD, "sub": "u1", "client_id": "c1", "iat": now, "exp": now + 3600,
                        "jti": "j", "scope": "read", "cnf": {"jkt": client.thumbprint()}}, as_key)
    public = {"keys": [as_key.as_dict(private=False)]}
    validator = AccessTokenValidator([Issuer(ISS, jwks=JwksCache(ISS, jwks_uri="x", fetch=lambda _u: public))],
                                     audiences=[AUD])
    dpop = DpopVerifier(algs=("ES256", "PS256", "EdDSA"), replay=store,
                        nonces=NonceIssuer(b"0123456789abcdef0123", RS_LABEL))
    verifier = Verifier(validator, core_bindings(dpop), Policy(routes=(Route(path="/resource", scopes=("read",)),)),
                        replay=store)
    return verifier, token, client.as_dict(private=True)


def bench_store(store: ReplayStore, floor: Floor, n: int) -> tuple[float, float]:
    """Median µs of the floor and of a full decision, measured in alternating blocks so that the
    machine's noise hits both alike."""
    verifier, token, key = build(store)
    proofs = [create_proof(key, htm="GET", htu=URL, access_token=token) for _ in range(n + 50)]
    auth = ("DPoP " + token,)
    for proof in proofs[:50]:  # warm-up: first JWKS load, caches, connections
        assert verifier.decide(AuthRequest.for_url("GET", URL + "?x=1", auth, (proof,))).allow
    full, base = [], []
    todo = proofs[50:]
    for block in range(0, len(todo), 100):
        base.extend(floor.once() for _ in range(100))
        for proof in todo[block:block + 100]:
            request = AuthRequest.for_url("GET", URL + "?x=1", auth, (proof,))
            t = time.perf_counter()
            decision = verifier.decide(request)
            full.append(time.perf_counter() - t)
            assert decision.allow, decision.reason
    replayed = verifier.decide(AuthRequest.for_url("GET", URL, auth, (proofs[-1],)))
    assert replayed.reason == "dpop_replay", replayed.reason  # the store really is on
    return statistics.median(base) * 1e6, statistics.median(full) * 1e6


def round_trip(store: RedisReplayStore, n: int) -> float:
    """Median µs of one ``SET key 1 NX PX`` through the store's own redis-py client (a fresh key each time)."""
    client = store._client  # noqa: SLF001 - the very connection the store uses
    samples = []
    for i in range(n):
        t = time.perf_counter()
        client.set(f"tokenguard:bench:{i}:{time.time_ns()}", b"1", nx=True, px=60000)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=4000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    # The stores' epochs are an hour old, as on a deployment that has been running (a new one refuses
    # proofs issued before its epoch + iat_future: README, "Replay store").
    past = time.time() - 3600
    EmbeddedReplayStore(tmp / "replay", max_entries=1_000_000, clock=lambda: past).close()
    stores: list[tuple[str, ReplayStore]] = [("memory", MemoryReplayStore()),
                                             ("embedded (lmdb)", EmbeddedReplayStore(tmp / "replay",
                                                                                     max_entries=1_000_000))]
    redis_proc = None
    if shutil.which("redis-server"):
        port = free_port()
        redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        RedisReplayStore(f"redis://127.0.0.1:{port}/0", clock=lambda: past).close()
        stores.append(("redis", RedisReplayStore(f"redis://127.0.0.1:{port}/0")))
    try:
        floor = Floor()
        print(f"{'replay store':24} {'floor µs':>9} {'full µs':>8} {'ratio':>7}")
        print("(floor = raw ES256 verify + raw RS256 verify; full = Verifier.decide, fresh proof, replay on)")
        fulls: dict[str, float] = {}
        for name, store in stores:
            base, full = bench_store(store, floor, args.n)
            fulls[name] = full
            print(f"{name:24} {base:9.1f} {full:8.1f} {full / base:6.2f}x")
        print("target: <= 1.30x with the embedded store")
        redis_store = next((store for name, store in stores if name == "redis"), None)
        if isinstance(redis_store, RedisReplayStore):
            trip = round_trip(redis_store, args.n)
            print(f"redis: full(redis) - full(memory) = {fulls['redis'] - fulls['memory']:.1f} µs; one bare SET NX PX "
                  f"round trip with the same client = {trip:.1f} µs")
    finally:
        if redis_proc:
            redis_proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
