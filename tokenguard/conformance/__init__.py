"""tokenguard conformance: a portable black-box suite for DPoP / mTLS / bearer verifiers and ASes.

Normative source: ``spec/conformance.md`` §1 (resource server) and §2 (authorization server).
The suite shares no code with tokenguard's verifier: it mints tokens, proofs and certificates with
``cryptography`` directly and judges responses only by status and parsed ``WWW-Authenticate``.
"""

from __future__ import annotations

from .runner import add_arguments, main, run

__all__ = ["add_arguments", "run", "main"]
