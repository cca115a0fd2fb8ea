"""Stateless DPoP server nonces (RFC 9449 §8, §9).

A nonce is HMAC-SHA256 over a time-step counter, keyed by HKDF(secret, label): every instance that
shares the secret issues and accepts the same nonces without shared state, and the label keeps
resource-server nonces and authorization-server nonces apart (RFC 9449 §9: a nonce is only valid at
the server that issued it). The current step and ``accept_steps`` previous ones are accepted.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tokenguard.core.b64 import b64url_encode

RS_LABEL = "tokenguard dpop nonce: resource server"
AS_LABEL = "tokenguard dpop nonce: authorization server"
DEFAULT_STEP = 60  # seconds per nonce
DEFAULT_ACCEPT_STEPS = 2  # how many past nonces are still accepted


class NonceIssuer:
    def __init__(self, secret: bytes, label: str, *, step: int = DEFAULT_STEP, accept_steps: int = DEFAULT_ACCEPT_STEPS,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(secret)
        self.step = step
        self.accept_steps = accept_steps
        self._clock = clock

    @property
    def lifetime(self) -> int:
        """Longest time, in seconds, for which an issued nonce is accepted."""
        return self.step * (self.accept_steps + 1)

    def _for_step(self, counter: int) -> str:
        return b64url_encode(hmac.new(self._key, counter.to_bytes(8, "big"), sha256).digest())

    def issue(self) -> str:
        """The current nonce: 256 bits, base64url, so within RFC 9449 §8's ``1*NQCHAR``."""
        return self._for_step(int(self._clock() // self.step))

    def is_valid(self, nonce: object) -> bool:
        return self.issued_since(nonce) is not None

    def issued_since(self, nonce: object) -> float | None:
        """When a valid nonce began to be handed out (the start of its step), else None: a proof that
        carries it cannot have been made earlier (the replay store's epoch rule uses this)."""
        if not isinstance(nonce, str) or len(nonce) != 43 or not nonce.isascii():  # compare_digest needs ASCII
            return None
        current = int(self._clock() // self.step)
        for back in range(self.accept_steps + 1):
            if hmac.compare_digest(nonce, self._for_step(current - back)):
                return float((current - back) * self.step)
        return None
