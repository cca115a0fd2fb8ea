"""Fixtures for the core tests: the cases' keys and certificates (session-wide), a fresh world per test.

The keys and certificates are those of docs/conformance-cases.md (Notation).
"""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from .helpers import Env, Keys, make_cert


@pytest.fixture(scope="session")
def keys() -> Keys:
    c1, c2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return Keys(
        K1=ECKey.generate_key("P-256"), K2=ECKey.generate_key("P-256"), KR=RSAKey.generate_key(2048),
        KE=OKPKey.generate_key("Ed25519"), AS1=RSAKey.generate_key(2048), AS2=RSAKey.generate_key(2048),
        ATTACKER=RSAKey.generate_key(2048), C1=c1, C2=c2,
        CERT1=make_cert(c1, "client-1", 1001), CERT1b=make_cert(c1, "client-1", 1002),
        CERT2=make_cert(c2, "client-2", 2001))


@pytest.fixture
def env(keys: Keys) -> Env:
    return Env(keys)


@pytest.fixture(autouse=True)
def _quiet_joserfc_security_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        yield
