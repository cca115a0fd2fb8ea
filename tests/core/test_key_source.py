"""Issuer keys off the request path (issue 10, items 1 and 2): the :class:`JwksCache` key source.

Inline (no background thread, a settable clock): fetch scheduling, back-off, the host-wide unknown-kid
cool-down, cheap checks before any key lookup. Served (``background=True``, a real thread): a request
never waits on a slow fetch longer than ``key_wait``, and is answered at once afterwards. Shared
(``FileKeyStore``): one fetch serves every process of a host, and keys survive a restart until
``max_stale``.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import RSAKey

from tokenguard.core.errors import InvalidToken, VerifierUnavailable
from tokenguard.core.jwks import (
    RETRY_MAX,
    FetchEvent,
    JwksCache,
    KeyRecord,
    MemoryKeyStore,
    backoff,
    parse_jwks,
    store_key,
)
from tokenguard.core.metadata import FetchError
from tokenguard.keysets import FileKeyStore

from .helpers import AUD, ISS, JWKS_URI, T0, Clock, Env, assert_allowed, assert_B, public_key_jwk

SOURCE = store_key(ISS, JWKS_URI)  # the name the key source's record is kept under

BUDGET = 0.3  # key_wait in the served tests


@pytest.fixture(scope="module")
def as_key() -> RSAKey:
    return RSAKey.generate_key(2048)


def jwks_of(key: RSAKey, kid: str = "as-1") -> dict[str, Any]:
    return {"keys": [{**public_key_jwk(key), "kid": kid, "use": "sig", "alg": "RS256"}]}


class Issuer:
    """The AS's JWKS as a fetch function: counts calls, can be down, or hang until released."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = dict(document)
        self.calls = 0
        self.down = False
        self.hang = threading.Event()  # set: every fetch blocks until `release` is set
        self.release = threading.Event()

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.calls += 1
        if self.hang.is_set():
            self.release.wait(30)
        if self.down:
            raise FetchError(f"ConnectionError fetching {url}")
        return self.document


@pytest.fixture
def issuer(as_key: RSAKey) -> Iterator[Issuer]:
    fake = Issuer(jwks_of(as_key))
    yield fake
    fake.release.set()  # never leave a refresher thread blocked


def inline(fetch: Issuer, clock: Clock, store: MemoryKeyStore | FileKeyStore | None = None, **options: Any
           ) -> JwksCache:
    return JwksCache(ISS, jwks_uri=JWKS_URI, fetch=fetch, clock=clock, store=store, **options)


def served(fetch: Issuer, store: MemoryKeyStore | FileKeyStore | None = None, **options: Any) -> JwksCache:
    options.setdefault("key_wait", BUDGET)
    return JwksCache(ISS, jwks_uri=JWKS_URI, fetch=fetch, store=store, background=True, **options)


# -- inline: scheduling -------------------------------------------------------------------------------


def test_keys_are_refreshed_before_they_expire(issuer: Issuer) -> None:
    clock = Clock()
    cache = inline(issuer, clock, ttl=100)
    assert cache.keys_for("as-1", "RS256") and issuer.calls == 1
    clock.advance(79)
    cache.keys_for("as-1", "RS256")
    assert issuer.calls == 1
    clock.advance(2)  # 81 s: past 80 % of the TTL
    cache.keys_for("as-1", "RS256")
    assert issuer.calls == 2


def test_failed_fetches_back_off_and_keys_keep_serving(issuer: Issuer) -> None:
    clock = Clock()
    events: list[FetchEvent] = []
    cache = inline(issuer, clock, ttl=10, on_fetch=events.append)
    cache.keys_for("as-1", "RS256")
    issuer.down = True
    attempts = []
    for _ in range(400):  # 100 s, a request every 0.25 s
        clock.advance(0.25)
        before = issuer.calls
        assert cache.keys_for("as-1", "RS256")  # the cached keys serve throughout
        if issuer.calls > before:
            attempts.append(clock.now - T0)
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]  # doubling ...
    assert all(gap <= RETRY_MAX + 1 for gap in gaps)  # ... up to the cap
    failures = [e for e in events if not e.ok]
    assert len(failures) == len(attempts) and failures[-1].failures == len(attempts)
    assert failures[0].issuer == ISS and "ConnectionError" in (failures[0].error or "")
    issuer.down = False
    clock.advance(RETRY_MAX + 1)
    cache.keys_for("as-1", "RS256")
    assert events[-1].ok and events[-1].recovered and events[-1].failures == len(attempts)


def test_keys_older_than_max_stale_fail_closed_naming_issuer_and_cause(issuer: Issuer) -> None:
    clock = Clock()
    cache = inline(issuer, clock, ttl=10, max_stale=100)
    cache.keys_for("as-1", "RS256")
    issuer.down = True
    clock.advance(99)
    assert cache.keys_for("as-1", "RS256")
    clock.advance(2)
    with pytest.raises(VerifierUnavailable) as caught:
        cache.keys_for("as-1", "RS256")
    assert caught.value.reason == "jwks_unavailable"
    assert ISS in caught.value.description and "jwks_max_stale" in caught.value.description
    assert "ConnectionError" in caught.value.description
    assert cache.status() == caught.value.description


def test_never_fetched_detail_names_issuer_and_last_error(issuer: Issuer) -> None:
    issuer.down = True
    cache = inline(issuer, Clock())
    with pytest.raises(VerifierUnavailable) as caught:
        cache.keys_for("as-1", "RS256")
    assert ISS in caught.value.description and "ConnectionError fetching" in caught.value.description


def test_unknown_kid_cooldown_is_host_wide(issuer: Issuer) -> None:
    """Two workers of one host (one shared store): a flood of random kids costs one fetch per cool-down."""
    clock, store = Clock(), MemoryKeyStore()
    workers = [inline(issuer, clock, store, cooldown=30), inline(issuer, clock, store, cooldown=30)]
    workers[0].keys_for("as-1", "RS256")
    workers[1].keys_for("as-1", "RS256")
    assert issuer.calls == 1  # the second worker adopted the first one's key set
    for n in range(60):  # 29.5 s of random kids, alternating workers
        clock.advance(0.5)
        with pytest.raises(InvalidToken, match="token_unknown_kid"):
            workers[n % 2].keys_for(f"random-{n}", "RS256")
    assert issuer.calls == 2


def test_rotated_key_fetched_by_one_worker_is_adopted_by_the_other(issuer: Issuer, as_key: RSAKey) -> None:
    clock, store = Clock(), MemoryKeyStore()
    first, second = inline(issuer, clock, store), inline(issuer, clock, store)
    first.keys_for("as-1", "RS256")
    second.keys_for("as-1", "RS256")
    issuer.document = {"keys": [*jwks_of(as_key)["keys"], *jwks_of(as_key, "as-2")["keys"]]}
    clock.advance(2)
    assert first.keys_for("as-2", "RS256")
    assert second.keys_for("as-2", "RS256")
    assert issuer.calls == 2


@pytest.mark.parametrize("kid", ["x" * 257, "caf\u00e9", "tab\tkid", ""])
def test_unusable_kid_never_triggers_a_fetch(issuer: Issuer, kid: str) -> None:
    clock = Clock()
    cache = inline(issuer, clock)
    cache.keys_for("as-1", "RS256")
    clock.advance(60)
    with pytest.raises(InvalidToken, match="token_unknown_kid"):
        cache.keys_for(kid, "RS256")
    assert issuer.calls == 1


CHEAP_FAILURES = {
    "expired": ({"exp": T0 - 3600}, {}, "token_expired"),
    "not-yet-valid": ({"nbf": T0 + 3600}, {}, "token_not_yet_valid"),
    "wrong-audience": ({"aud": "https://other.test"}, {}, "token_wrong_audience"),
    "no-jti": ({"jti": None}, {}, "token_missing_claim"),
    "typ-JWT": ({}, {"typ": "JWT"}, "token_bad_typ"),
    "alg-HS256": ({}, {"alg": "HS256"}, "token_bad_alg"),
    "kid-not-string": ({}, {"kid": 7}, "token_malformed"),
    "unknown-issuer": ({"iss": "https://evil.test"}, {}, "token_unknown_issuer"),
}


@pytest.mark.parametrize("case", list(CHEAP_FAILURES), ids=list(CHEAP_FAILURES))
def test_forged_token_with_unknown_kid_fetches_nothing_unless_cheap_checks_pass(env: Env, case: str) -> None:
    """A token (unsigned, random kid) that fails any check needing no key is refused for that, and never
    makes the verifier fetch the issuer's keys again (issue 10, item 1: cheap checks first)."""
    from .helpers import DROP, b64u_json

    claims, header, reason = CHEAP_FAILURES[case]
    assert_allowed(env.decide(env.b_bearer()))  # keys fetched once
    env.clock.advance(env.jwks_cache.cooldown + 1)
    body = {"iss": ISS, "aud": AUD, "sub": "u1", "client_id": "c1", "iat": T0, "exp": T0 + 600, "jti": "j1",
            **{k: (DROP if v is None else v) for k, v in claims.items()}}
    body = {k: v for k, v in body.items() if v is not DROP}
    head = {"typ": "at+jwt", "alg": "RS256", "kid": f"forged-{uuid.uuid4()}", **header}
    forged = f"{b64u_json(head)}.{b64u_json(body)}.c2lnbmF0dXJl"
    assert_B(env.decide(env.b_bearer(forged)), "invalid_token", reason)
    assert env.jwks.calls == 1


def test_unknown_issuer_is_named_sanitised_and_truncated(env: Env) -> None:
    token = env.token({"iss": 'https://evil.test/"\\\u00e9' + "a" * 200})
    decision = env.decide(env.b_bearer(token))
    assert_B(decision, "invalid_token", "token_unknown_issuer")
    assert decision.description.startswith("Access token issuer 'https://evil.test/???aaa")
    assert "..." in decision.description and len(decision.description) < 200


# -- served: the request path never waits on the network beyond key_wait -------------------------------


def test_a_slow_first_fetch_is_waited_for_within_the_budget_then_never(issuer: Issuer) -> None:
    issuer.hang.set()
    issuer.down = True
    cache = served(issuer)
    try:
        started = time.monotonic()
        with pytest.raises(VerifierUnavailable, match="jwks_unavailable"):
            cache.keys_for("as-1", "RS256")
        assert time.monotonic() - started >= BUDGET * 0.9  # the first fetch got its budget
        assert not issuer.release.is_set()  # ... and the answer came while it still hung
        issuer.release.set()  # it fails, slowly: from now on nobody waits for this issuer
        from support import wait_for

        wait_for(lambda: cache._generation >= 1, "the first attempt to end")
        issuer.release.clear()
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(VerifierUnavailable, match="jwks_unavailable"):
                cache.keys_for("as-1", "RS256")
        assert time.monotonic() - started < 20 * BUDGET / 2  # bounded: not a wait each
        issuer.hang.clear()
        issuer.down = False
        issuer.release.set()
        wait_for(lambda: cache.status() == "ok", "the issuer to be fetched again after its back-off")
        assert cache.keys_for("as-1", "RS256")
    finally:
        cache.close()


def test_a_quick_first_fetch_serves_the_first_request(issuer: Issuer) -> None:
    cache = served(issuer, key_wait=5.0)
    try:
        assert cache.keys_for("as-1", "RS256") and issuer.calls == 1
    finally:
        cache.close()


def test_unknown_kid_waits_for_one_fetch_within_budget_and_others_do_not_wait(issuer: Issuer,
                                                                                as_key: RSAKey) -> None:
    cache = served(issuer, cooldown=0)
    try:
        assert cache.keys_for("as-1", "RS256")
        issuer.document = {"keys": [*jwks_of(as_key)["keys"], *jwks_of(as_key, "as-2")["keys"]]}
        assert cache.keys_for("as-2", "RS256")  # rotation: the request that asked got the new key
        issuer.hang.set()
        time.sleep(1.1)  # the once-a-second limit on asking
        with pytest.raises(InvalidToken, match="token_unknown_kid"):
            cache.keys_for("as-3", "RS256")  # waits its budget for the (hanging) fetch
        asked = issuer.calls
        for n in range(10):  # while that fetch hangs, nobody waits and nobody fetches again
            time.sleep(0.12)
            with pytest.raises(InvalidToken, match="token_unknown_kid"):
                cache.keys_for(f"as-{n + 4}", "RS256")
        assert issuer.calls == asked and not issuer.release.is_set()
    finally:
        issuer.release.set()
        cache.close()


def test_an_issuer_back_from_down_serves_the_next_request(issuer: Issuer) -> None:
    """Down (connections refused: quick failures) while no keys are held: once it is back, the next
    request after a second fetches and waits for the keys, instead of failing until the back-off ends."""
    issuer.down = True
    cache = served(issuer, key_wait=5.0)
    try:
        for _ in range(3):
            with pytest.raises(VerifierUnavailable, match="jwks_unavailable"):
                cache.keys_for("as-1", "RS256")
            time.sleep(1.1)
        issuer.down = False
        time.sleep(1.1)
        assert cache.keys_for("as-1", "RS256")
    finally:
        cache.close()


def test_refresher_thread_ends_with_its_cache(issuer: Issuer) -> None:
    cache = served(issuer)
    cache.keys_for("as-1", "RS256")
    thread = cache._thread
    assert thread is not None and thread.is_alive()
    cache.close()
    thread.join(10)
    assert not thread.is_alive()
    dropped = served(issuer)
    dropped.keys_for("as-1", "RS256")
    thread = dropped._thread
    del dropped
    gc.collect()
    thread.join(40)  # it notices within its idle check
    assert not thread.is_alive()


# -- shared: files in the state directory ---------------------------------------------------------------


def test_persisted_keys_serve_a_restart_with_the_issuer_down(tmp_path: Path, issuer: Issuer) -> None:
    clock = Clock()
    inline(issuer, clock, FileKeyStore(tmp_path)).keys_for("as-1", "RS256")
    issuer.down = True
    clock.advance(3600)  # an hour later, the issuer still down: a new process
    restarted = inline(issuer, clock, FileKeyStore(tmp_path), ttl=300)
    assert restarted.keys_for("as-1", "RS256")
    assert restarted.status() == "ok"
    record = FileKeyStore(tmp_path).load(SOURCE)
    assert record is not None and record.failures >= 1 and record.fetched_at == T0
    files = list((tmp_path / "jwks").glob("*.json"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600


def test_one_fetch_serves_every_process_of_the_host(tmp_path: Path, issuer: Issuer) -> None:
    workers = [served(issuer, FileKeyStore(tmp_path)) for _ in range(4)]
    try:
        for worker in workers:
            assert worker.keys_for("as-1", "RS256")
        assert issuer.calls == 1
    finally:
        for worker in workers:
            worker.close()


def test_damaged_key_file_is_ignored_with_a_log_line(tmp_path: Path, issuer: Issuer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    store = FileKeyStore(tmp_path)
    inline(issuer, Clock(), store).keys_for("as-1", "RS256")
    (path,) = (tmp_path / "jwks").glob("*.json")
    path.write_bytes(b'{"issuer": "https://as.test", "record": {"jwks": 1')
    with caplog.at_level(logging.WARNING, logger="tokenguard.keysets"):
        assert store.load(SOURCE) is None
    assert "jwks_file_unreadable" in caplog.text
    fresh = inline(issuer, Clock(), store)
    assert fresh.keys_for("as-1", "RS256") and issuer.calls == 2  # fetched again, file rewritten
    assert store.load(SOURCE) is not None


def test_a_removed_key_file_is_written_again_from_memory(tmp_path: Path, issuer: Issuer) -> None:
    clock = Clock()
    cache = inline(issuer, clock, FileKeyStore(tmp_path), cooldown=30)
    cache.keys_for("as-1", "RS256")
    clock.advance(2)
    with pytest.raises(InvalidToken):
        cache.keys_for("nope", "RS256")  # an unknown-kid fetch: the cool-down starts
    (path,) = (tmp_path / "jwks").glob("*.json")
    path.unlink()
    clock.advance(2)
    with pytest.raises(InvalidToken):
        cache.keys_for("nope-2", "RS256")  # a cycle with nothing to fetch ...
    assert issuer.calls == 2 and path.exists()  # ... puts the keys back for the next process


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
RECORD_FIELDS = st.fixed_dictionaries({}, optional={
    "jwks": JSON, "fetched_at": JSON, "jwks_uri": JSON, "attempted_at": JSON, "kid_refresh_at": JSON,
    "failures": JSON, "error": JSON})


@settings(derandomize=True, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(RECORD_FIELDS | JSON)
def test_key_record_parser_takes_any_json(data: Any) -> None:
    """A damaged or hostile key file yields a well-typed record or None, never an exception."""
    record = KeyRecord.from_json(data)
    if record is not None:
        assert record.jwks is None or isinstance(record.jwks, dict)
        assert all(t is None or isinstance(t, int | float) for t in (record.fetched_at, record.attempted_at))
        assert isinstance(record.failures, int) and record.failures >= 0
        assert KeyRecord.from_json(json.loads(json.dumps(record.to_json()))) == record


@settings(derandomize=True, max_examples=200)
@given(JSON)
def test_jwks_parser_takes_any_json(document: Any) -> None:
    """Whatever an issuer answers, parsing a key set either yields keys or raises FetchError."""
    if not isinstance(document, dict):
        document = {"keys": document}
    try:
        keys = parse_jwks(document)
    except FetchError:
        return
    assert keys == []  # random JSON is never a usable key


def test_backoff_doubles_to_its_cap() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
