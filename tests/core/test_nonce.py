"""Stateless server nonces (RFC 9449 §8, §9; R-08)."""

from __future__ import annotations

import pytest

from tokenguard.core.nonce import AS_LABEL, RS_LABEL, NonceIssuer

from .helpers import NONCE_SECRET, NQCHAR, Clock


def test_nonce_is_43_nqchar() -> None:
    nonce = NonceIssuer(NONCE_SECRET, RS_LABEL, clock=Clock()).issue()
    assert len(nonce) == 43 and NQCHAR.match(nonce)


def test_rs_and_as_nonces_not_interchangeable() -> None:
    clock = Clock()
    rs, as_ = NonceIssuer(NONCE_SECRET, RS_LABEL, clock=clock), NonceIssuer(NONCE_SECRET, AS_LABEL, clock=clock)
    assert rs.issue() != as_.issue()
    assert not rs.is_valid(as_.issue()) and not as_.is_valid(rs.issue())


def test_instances_sharing_the_secret_accept_each_other() -> None:
    clock = Clock()
    one, two = NonceIssuer(NONCE_SECRET, RS_LABEL, clock=clock), NonceIssuer(NONCE_SECRET, RS_LABEL, clock=clock)
    assert two.is_valid(one.issue())
    assert not NonceIssuer(b"x" * 32, RS_LABEL, clock=clock).is_valid(one.issue())


def test_accepted_steps() -> None:
    clock = Clock(6000 * 60)  # start of a step
    issuer = NonceIssuer(NONCE_SECRET, RS_LABEL, step=60, accept_steps=2, clock=clock)
    nonce = issuer.issue()
    for _ in range(2):
        clock.advance(60)
        assert issuer.is_valid(nonce)
    clock.advance(59.9)
    assert issuer.is_valid(nonce)
    clock.advance(0.1)
    assert not issuer.is_valid(nonce)  # three steps later
    assert issuer.lifetime == 180


def test_future_step_nonce_not_accepted() -> None:
    clock = Clock(6000 * 60)
    issuer = NonceIssuer(NONCE_SECRET, RS_LABEL, clock=clock)
    clock.advance(60)
    future = issuer.issue()
    clock.advance(-60)
    assert not issuer.is_valid(future)


@pytest.mark.parametrize("value", [None, 123, "", "x" * 43, "not-a-server-nonce", b"bytes"])
def test_garbage_nonces_invalid(value: object) -> None:
    assert not NonceIssuer(NONCE_SECRET, RS_LABEL, clock=Clock()).is_valid(value)


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        NonceIssuer(b"short", RS_LABEL)
