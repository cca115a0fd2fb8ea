"""Spec §1.3 NONCE-RS-01…08: resource-server nonces (RFC 9449 §8, §9, §11.3)."""

from __future__ import annotations

import pytest

from tokenguard.core.nonce import AS_LABEL, NonceIssuer

from .helpers import NONCE_SECRET, T0, Env, assert_allowed, assert_D, assert_nonce, header_values


@pytest.fixture
def nenv(env: Env) -> Env:
    env.build(nonce=True)
    return env


def _challenge_description(d) -> str | None:
    from .helpers import challenges

    return challenges(d)["dpop"].get("error_description")


def test_NONCE_RS_01_proof_without_nonce(nenv: Env) -> None:
    d = nenv.decide(nenv.b_dpop())
    assert_D(d, "use_dpop_nonce", "dpop_nonce_missing")
    assert_nonce(d)
    assert _challenge_description(d)


def test_NONCE_RS_02_retry_with_nonce(nenv: Env) -> None:
    nonce = assert_nonce(nenv.decide(nenv.b_dpop()))
    d = nenv.decide(nenv.b_dpop(nenv.proof({"nonce": nonce})))
    assert_allowed(d)
    assert len(header_values(d, "DPoP-Nonce")) <= 1


@pytest.mark.parametrize("case", ["made-up", "expired", "non-ascii"], ids=lambda c: f"NONCE-RS-03-{c}")
def test_NONCE_RS_03_bad_nonce(nenv: Env, case: str) -> None:
    """``non-ascii``: a 43-character nonce with non-ASCII characters made ``hmac.compare_digest`` raise
    TypeError, so the request failed closed as an internal error instead of asking for a nonce."""
    if case == "made-up":
        nonce = "not-a-server-nonce"
    elif case == "non-ascii":
        nonce = "é" * 43
    else:
        nonce = assert_nonce(nenv.decide(nenv.b_dpop()))
        nenv.clock.advance(nenv.nonces.lifetime + 1)
    d = nenv.decide(nenv.b_dpop(nenv.proof({"nonce": nonce})))
    assert_D(d, "use_dpop_nonce", "dpop_nonce_invalid")
    fresh = assert_nonce(d)
    assert fresh != nonce


def test_NONCE_RS_04_authorization_server_nonce(nenv: Env) -> None:
    as_nonce = NonceIssuer(NONCE_SECRET, AS_LABEL, clock=nenv.clock).issue()
    assert as_nonce != nenv.nonces.issue()
    d = nenv.decide(nenv.b_dpop(nenv.proof({"nonce": as_nonce})))
    assert_D(d, "use_dpop_nonce", "dpop_nonce_invalid")
    assert_nonce(d)


def test_NONCE_RS_05_never_bypassed_after_issue(nenv: Env) -> None:
    assert_nonce(nenv.decide(nenv.b_dpop()))
    for _ in range(3):
        d = nenv.decide(nenv.b_dpop())
        assert_D(d, "use_dpop_nonce", "dpop_nonce_missing")
        assert_nonce(d)


def test_NONCE_RS_06_nonce_vouches_for_old_iat(nenv: Env) -> None:
    nonce = nenv.nonces.issue()
    assert_allowed(nenv.decide(nenv.b_dpop(nenv.proof({"nonce": nonce, "iat": T0 - 3600}))))


def test_NONCE_RS_06_future_iat_still_refused(nenv: Env) -> None:
    nonce = nenv.nonces.issue()
    d = nenv.decide(nenv.b_dpop(nenv.proof({"nonce": nonce, "iat": T0 + 3600})))
    assert_D(d, "invalid_dpop_proof", "dpop_iat_future")


def test_NONCE_RS_07_one_unpredictable_nonce_each_time(nenv: Env) -> None:
    seen = []
    for _ in range(2):
        d = nenv.decide(nenv.b_dpop())
        assert_D(d, "use_dpop_nonce")
        nonce = assert_nonce(d)
        assert len(nonce) * 6 >= 128
        seen.append(nonce)
    other = NonceIssuer(b"another-secret-of-16+bytes", "tokenguard dpop nonce: resource server", clock=nenv.clock)
    assert other.issue() != seen[0]  # depends on the secret


def test_NONCE_RS_07_rotation_on_200_is_no_store(nenv: Env) -> None:
    old = nenv.nonces.issue()
    nenv.clock.advance(nenv.nonces.step)  # next time step: the old nonce is still accepted
    d = nenv.decide(nenv.b_dpop(nenv.proof({"nonce": old})))
    assert_allowed(d)
    new = assert_nonce(d)
    assert new != old and new == nenv.nonces.issue()


def test_NONCE_RS_replay_remembered_while_nonce_valid(nenv: Env) -> None:
    """A nonce-vouched proof stays acceptable for the nonce lifetime, so its jti must be kept as long."""
    request = nenv.b_dpop(nenv.proof({"nonce": nenv.nonces.issue()}))
    assert_allowed(nenv.decide(request))
    nenv.clock.advance(150)
    assert nenv.nonces.is_valid(nenv.nonces._for_step(int(T0 // nenv.nonces.step)))
    assert_D(nenv.decide(request), "invalid_dpop_proof", "dpop_replay")


def test_NONCE_RS_08_unsolicited_nonce_ignored(env: Env) -> None:
    d = env.decide(env.b_dpop(env.proof({"nonce": "unsolicited-nonce"})))
    assert_allowed(d)
    assert not header_values(d, "DPoP-Nonce")
