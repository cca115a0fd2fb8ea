"""Core micro-benchmark: full verification of a DPoP-bound JWT request vs the raw signature floor.

In one run it measures (a) the floor: one ES256 proof verify plus one RS256 access-token verify with
``cryptography`` alone, and (b) ``Verifier.decide`` on a DPoP-bound request with a fresh proof each
time and the replay store on, for each replay store; it prints µs per request and the ratio to (a).
Proofs are generated before the timed loop. Usage: ``python scripts/bench_core.py [-n 3000]``.
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

from tokenguard.access_token import AccessTokenValidator, Issuer
from tokenguard.dpop import DpopVerifier, create_proof
from tokenguard.jwks import JwksCache
from tokenguard.nonce import RS_LABEL, NonceIssuer
from tokenguard.policy import Policy, Route
from tokenguard.replay import MemoryReplayStore, RedisReplayStore, ReplayStore, SqliteReplayStore
from tokenguard.verifier import AuthRequest, Verifier

ISS, AUD, URL = "https://as.test", "https://api.test", "https://api.test/resource"


def floor_us(n: int) -> float:
    """Median µs of one raw ES256 verify + one raw RS256 verify (the unavoidable crypto)."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = b"x" * 600
    der = ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    rsa_sig = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    ec_pub, rsa_pub = ec_key.public_key(), rsa_key.public_key()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        ec_pub.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                      data, ec.ECDSA(hashes.SHA256()))
        rsa_pub.verify(rsa_sig, data, padding.PKCS1v15(), hashes.SHA256())
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


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
    verifier = Verifier(validator, dpop, Policy(routes=(Route(path="/resource", scopes=("read",)),)))
    return verifier, token, client.as_dict(private=True)


def bench_store(name: str, store: ReplayStore, n: int) -> float:
    verifier, token, key = build(store)
    proofs = [create_proof(key, htm="GET", htu=URL, access_token=token) for _ in range(n + 50)]
    auth = ("DPoP " + token,)
    for proof in proofs[:50]:  # warm-up: first JWKS load, caches, connections
        assert verifier.decide(AuthRequest("GET", URL + "?x=1", auth, (proof,))).allow
    samples = []
    for proof in proofs[50:]:
        request = AuthRequest("GET", URL + "?x=1", auth, (proof,))
        t = time.perf_counter()
        decision = verifier.decide(request)
        samples.append(time.perf_counter() - t)
        assert decision.allow, decision.reason
    replayed = verifier.decide(AuthRequest("GET", URL, auth, (proofs[-1],)))
    assert replayed.reason == "dpop_replay", replayed.reason  # the store really is on
    return statistics.median(samples) * 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    stores: list[tuple[str, ReplayStore]] = [("memory", MemoryReplayStore()),
                                             ("embedded (sqlite wal)", SqliteReplayStore(tmp / "replay.sqlite3"))]
    redis_proc = None
    if shutil.which("redis-server"):
        port = free_port()
        redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        stores.append(("redis", RedisReplayStore(f"redis://127.0.0.1:{port}/0")))
    try:
        floor = floor_us(args.n)
        print(f"floor: raw ES256 verify + raw RS256 verify = {floor:7.1f} µs (median of {args.n})")
        print(f"{'replay store':24} {'µs/request':>11} {'ratio to floor':>15}")
        for name, store in stores:
            us = bench_store(name, store, args.n)
            print(f"{name:24} {us:11.1f} {us / floor:15.2f}x")
        print("target: <= 1.30x with the embedded store")
    finally:
        if redis_proc:
            redis_proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
