"""Caches keyed by what clients send: bounded by bytes, filled only with what was verified (issue 9, item 6).

Memory is measured with ``tracemalloc`` around many unique, large, attacker-chosen inputs: what the
caches keep afterwards must stay within their byte budgets, whatever the inputs were.
"""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from tokenguard.core.cache import BoundedCache
from tokenguard.core.dpop import DpopVerifier
from tokenguard.core.errors import InvalidDpopProof
from tokenguard.core.jwk import PublicKeyCache
from tokenguard.core.policy import Policy, Route
from tokenguard.core.uri import normalize_target

from .helpers import T0, Clock, public_key_jwk, sign_jws

MiB = 1 << 20


def retained(work: Callable[[], object]) -> int:
    """Bytes still allocated after ``work`` ran (and its result was dropped)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = work()
        del result
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------- the cache itself


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 300)), max_size=200),
       st.integers(1, 20), st.integers(1, 2000))
def test_bounded_cache_never_holds_more_than_its_budget(puts: list[tuple[int, int]], entries: int,
                                                        budget: int) -> None:
    cache: BoundedCache[int, int] = BoundedCache(entries, budget)
    live: dict[int, int] = {}
    for key, size in puts:
        cache.put(key, key, size)
        if size <= budget:
            live[key] = size
        assert len(cache) <= entries and cache.size_bytes <= budget
    # what is left is a most-recently-put suffix, with exact accounting
    assert cache.size_bytes == sum(size for key, size in live.items() if cache.get(key) is not None)


def test_bounded_cache_evicts_the_least_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10, 100)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3, 40)  # over budget: b goes
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("huge", 4, 101)  # larger than the whole budget: not stored, nothing evicted
    assert cache.get("huge") is None and len(cache) == 2


# ----------------------------------------------------------------------- DPoP headers and keys


def _dpop() -> DpopVerifier:
    return DpopVerifier(algs=("ES256",), clock=Clock(T0))


def _proof(key: ECKey, *, pad: str = "", jwk_pad: str = "", sign_with: Any = None) -> str:
    jwk = public_key_jwk(key)
    if jwk_pad:
        jwk["pad"] = jwk_pad
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
    if pad:
        header["pad"] = pad
    claims = {"jti": str(uuid.uuid4()), "htm": "GET", "htu": "https://api.test/r", "iat": T0}
    return sign_jws(header, claims, sign_with or key, "ES256")


def test_unverified_proof_headers_are_never_cached() -> None:
    """Before the fix every parsed header was cached before its signature was checked: unique 7 KB
    headers on proofs nobody signed grew each worker by ~20 KB a request, up to ~80 MB."""
    verifier = _dpop()
    key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")

    def send_all() -> None:
        for _ in range(400):
            proof = _proof(key, pad=uuid.uuid4().hex * 160, sign_with=other)  # a ~7 KB header
            try:
                verifier.verify([proof], htm="GET", htu="https://api.test/r")
            except InvalidDpopProof as exc:
                assert exc.reason == "dpop_bad_signature"
            else:
                raise AssertionError("a proof signed by another key verified")

    assert retained(send_all) < 256 * 1024  # nothing of 400 x 7 KB stays behind


def test_verified_proof_headers_stay_within_the_byte_budget() -> None:
    """Anyone can sign a proof with their own key: unique valid headers fill the cache, within its budget."""
    verifier = _dpop()
    key = ECKey.generate_key("P-256")

    def send_all() -> None:
        for _ in range(1000):  # ~6.5 KB headers, 6.5 MB in all
            verifier.verify([_proof(key, pad=uuid.uuid4().hex * 150)], htm="GET", htu="https://api.test/r")

    assert retained(send_all) < 6 * MiB  # HEADER_CACHE_BYTES (4 MiB) plus bookkeeping


def test_public_keys_are_cached_by_their_rfc7638_members_only() -> None:
    """Members beyond the thumbprint's (``kid``, padding) do not make new entries (RFC 7638 §3.2)."""
    cache = PublicKeyCache()
    jwk = public_key_jwk(ECKey.generate_key("P-256"))
    first = cache.get(jwk)

    def variants() -> None:
        for n in range(800):
            assert cache.get({**jwk, "kid": f"k{n}", "pad": uuid.uuid4().hex * 100}) is first

    assert retained(variants) < 64 * 1024


def test_public_key_cache_refuses_private_members_even_for_a_cached_key() -> None:
    cache = PublicKeyCache()
    key = ECKey.generate_key("P-256")
    jwk = public_key_jwk(key)
    cache.get(jwk)
    private = {**jwk, "d": "AAAA"}
    try:
        cache.get(private)
    except ValueError as exc:
        assert "private" in str(exc)
    else:
        raise AssertionError("a JWK with a private member came back from the cache")


# ------------------------------------------------------------------- route memo and htu cache


def test_route_memo_is_bounded_by_bytes() -> None:
    """Unique long paths (no credentials needed to send them) cannot grow the route memo past 1 MiB."""
    policy = Policy(routes=(Route(name="all", path="*"),))

    def match_all() -> None:
        for _ in range(4000):
            path = f"/{uuid.uuid4().hex}/" + "a" * 440  # under the old 512-byte cut-off
            assert policy.route_for("GET", "api.test", path) is not None

    assert retained(match_all) < 1.5 * MiB


def test_htu_normalisation_cache_is_bounded_by_bytes() -> None:

    def normalise_all() -> None:
        for _ in range(800):
            url = f"https://api.test/{uuid.uuid4().hex}/" + "b" * 4000
            assert normalize_target(url) == url

    assert retained(normalise_all) < 1.5 * MiB
