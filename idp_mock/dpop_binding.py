"""DPoP at the token and PAR endpoints (RFC 9449 §5, §8, §10.1), over tokenguard's own verifier.

Every proof check is :class:`tokenguard.core.dpop.DpopVerifier`'s (one RFC 9449 implementation in the
project). This module only supplies what the AS side differs in: ``htu`` is the URL the client
actually called (so an mTLS alias must be named, TOK-AS-08), nonces carry the authorization-server
label (R-08), and errors are RFC 6749 §5.2 JSON with status 400 (R-02).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tokenguard.core.dpop import DpopProof, DpopVerifier
from tokenguard.core.errors import InvalidDpopProof, ReplayStoreUnavailable, UseDpopNonce
from tokenguard.core.nonce import NonceIssuer
from tokenguard.core.replay import ReplayStore
from tokenguard.core.uri import URIError, normalize_target

from .errors import InvalidDpopProofError, TemporarilyUnavailableError, UseDpopNonceError


class AsDpop:
    """Checks the ``DPoP`` header(s) of one request to an authorization-server endpoint."""

    def __init__(self, *, algs: Sequence[str], replay: ReplayStore, nonces: NonceIssuer | None,
                 require_nonce: bool, iat_past: int = 60, iat_future: int = 15,
                 clock: Callable[[], float] = time.time) -> None:
        self.require_nonce = require_nonce and nonces is not None
        self.nonces = nonces
        self.verifier = DpopVerifier(algs=algs, replay=replay, nonces=nonces if self.require_nonce else None,
                                     iat_past=iat_past, iat_future=iat_future, clock=clock,
                                     server_name="Authorization server")

    @property
    def algs(self) -> tuple[str, ...]:
        return self.verifier.algs

    def check(self, proofs: Sequence[str], *, method: str, url: str) -> DpopProof | None:
        """The verified proof, None when the request has no ``DPoP`` header; raises an OAuth2Error."""
        if not proofs:
            return None
        try:
            htu = normalize_target(url)
        except URIError as exc:
            raise InvalidDpopProofError("The request URL cannot be compared with htu") from exc
        try:
            return self.verifier.verify(list(proofs), htm=method, htu=htu, access_token=None,
                                        require_nonce=self.require_nonce)
        except UseDpopNonce as exc:
            raise UseDpopNonceError(exc.description, exc.nonce) from None
        except InvalidDpopProof as exc:
            raise InvalidDpopProofError(exc.description) from None
        except ReplayStoreUnavailable as exc:
            raise TemporarilyUnavailableError("DPoP replay protection is unavailable") from exc

    def next_nonce(self, proof: DpopProof | None) -> str | None:
        """RFC 9449 §8.2: a fresh nonce to return with a success, when it differs from the one used."""
        if not self.require_nonce or self.nonces is None or proof is None:
            return None
        current = self.nonces.issue()
        return current if proof.nonce != current else None
