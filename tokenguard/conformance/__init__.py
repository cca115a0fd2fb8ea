"""tokenguard conformance: a portable black-box suite for DPoP / mTLS / bearer verifiers and ASes.

The cases are listed in docs/conformance-cases.md (generated from the registry), the rules they
cite in docs/rules.md, the user guide is docs/conformance.md. The suite shares no code with
tokenguard's verifier: it mints tokens, proofs and certificates with ``cryptography`` directly and
judges responses only by status, parsed ``WWW-Authenticate`` and JSON bodies.
"""

from __future__ import annotations

from .runner import add_arguments, main, run

__all__ = ["add_arguments", "run", "main"]
