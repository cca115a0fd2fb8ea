"""The client side of DPoP and mTLS: keys, token requests, and requests with a fresh proof each time.

What the ``tokenguard`` CLI and ``scripts/demo.py`` share, one module per job: :mod:`.keys`,
:mod:`.tokens`, :mod:`.http` (the DPoP client), :mod:`.authorization` (discovery, token requests) and
:mod:`.challenges` (``WWW-Authenticate`` parsing, which the conformance suite uses too and which
therefore imports nothing from the verifier). This package face imports nothing itself.
"""
