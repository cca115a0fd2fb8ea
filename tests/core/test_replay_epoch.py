"""The epoch rule (issue 10, items 3-4): after a replay store reset, no proof that may have been used before
it is accepted; ``/readyz`` and ``/metrics`` say the store is resetting, full or unavailable."""

from __future__ import annotations

import logging

import pytest

from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import StoreStatus
from tokenguard.core.replay.memory import MemoryReplayStore
from tokenguard.core.verifier import Verifier

from .helpers import T0, Env, assert_allowed, assert_D


def _lose_memory(env: Env, epoch: float) -> MemoryReplayStore:
    """What a reset does: the same verifier, a store that remembers nothing before ``epoch``."""
    store = MemoryReplayStore(clock=env.clock, epoch=epoch)
    env.dpop.replay = env.verifier.replay = store
    return store


def test_a_proof_accepted_before_a_reset_is_never_accepted_after_it(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    accepted = [env.b_dpop() for _ in range(3)]
    for request in accepted:
        assert_allowed(env.decide(request))
    env.clock.advance(5)
    _lose_memory(env, epoch=env.clock())  # restarted empty, flushed or found damaged
    caplog.set_level(logging.WARNING, logger="tokenguard.replay")
    for request in accepted:  # the store no longer knows these jti values: the epoch refuses them instead
        assert_D(env.decide(request), "invalid_dpop_proof", "replay_store_reset")
        assert_D(env.decide(request), "invalid_dpop_proof", "dpop_replay")  # and now it knows them again
    warnings = [r.getMessage() for r in caplog.records if "replay_store_reset" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one line per reset, not one per request
    assert "epoch" in warnings[0] and "was none" in warnings[0]


def test_proofs_from_the_skew_window_are_refused_and_later_ones_accepted(env: Env) -> None:
    epoch = T0 + 100
    _lose_memory(env, epoch=epoch)
    env.clock.now = epoch + 1
    # A client whose clock runs iat_future (15 s) ahead could have had this proof accepted just before the
    # reset: refused. One issued at or after epoch + iat_future could not have been: accepted.
    d = env.decide(env.b_dpop(env.proof({"iat": epoch + 14})))
    assert_D(d, "invalid_dpop_proof", "replay_store_reset")
    assert "reset" in d.decision.detail
    env.clock.now = epoch + 15
    assert_allowed(env.decide(env.b_dpop(env.proof({"iat": epoch + 15}))))


def test_a_refused_proof_is_consumed(env: Env) -> None:
    """The jti is recorded before the epoch is read: the same proof is a plain replay afterwards."""
    _lose_memory(env, epoch=T0)
    request = env.b_dpop()
    assert_D(env.decide(request), "invalid_dpop_proof", "replay_store_reset")
    assert_D(env.decide(request), "invalid_dpop_proof", "dpop_replay")


class _Broken(MemoryReplayStore):
    def status(self) -> StoreStatus:
        return StoreStatus("broken", problem=ReplayStoreUnavailable("broken: ConnectionError"))


def _verifier(env: Env, store: MemoryReplayStore) -> Verifier:
    return Verifier(env.tokens, env.verifier.bindings, env.policy, replay=store, reset_margin=15, clock=env.clock)


def test_readiness_during_and_after_the_reset_guard(env: Env) -> None:
    verifier = _verifier(env, MemoryReplayStore(clock=env.clock, epoch=env.clock()))
    _, checks = verifier.readiness()
    assert "reset at" in checks["replay_store"] and "replay_store_reset" in checks["replay_store"], checks
    health = verifier.replay_health()
    assert health is not None and health.state == "reset"
    env.clock.advance(16)  # past epoch + iat_future + the one-second rounding of iat
    _, checks = verifier.readiness()
    assert checks["replay_store"] == "ok"


def test_readiness_when_full_or_unavailable(env: Env) -> None:
    full = MemoryReplayStore(max_entries=1, clock=env.clock)
    full.first_use("k", 60)
    verifier = _verifier(env, full)
    ready, checks = verifier.readiness()
    assert not ready and "1 of 1" in checks["replay_store"]
    health = verifier.replay_health()
    assert health is not None and health.state == "full"
    broken = _verifier(env, _Broken(clock=env.clock))
    ready, checks = broken.readiness()
    assert not ready and checks["replay_store"] == "broken: ConnectionError"
    health = broken.replay_health()
    assert health is not None and health.state == "unavailable"


def test_a_server_nonce_issued_after_the_reset_vouches_for_an_old_iat(env: Env) -> None:
    """NONCE-RS-06 (a valid nonce, iat an hour old: 200) still holds after a reset when the nonce was first
    handed out after it; a nonce from before the reset could have carried a proof used before it."""
    env.build(nonce=True)
    epoch = T0 + 5
    before = env.nonces.issue()  # step starting at or before T0: handed out before the reset
    _lose_memory(env, epoch=epoch)
    env.clock.now = epoch + env.nonces.step  # the nonce step now current began after the reset
    after = env.nonces.issue()
    assert_allowed(env.decide(env.b_dpop(env.proof({"iat": T0 - 3600, "nonce": after}))))
    d = env.decide(env.b_dpop(env.proof({"iat": T0 - 3600, "nonce": before})))
    assert_D(d, "invalid_dpop_proof", "replay_store_reset")
