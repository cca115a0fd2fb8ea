"""Strict base64url (RFC 7515 §2, no padding) and the SHA-256 digests RFC 9449 and RFC 8705 use."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
#: RFC 4648 §3.5: the last character of a canonical encoding leaves the unused low bits zero.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url; reject ``+``, ``/``, ``=``, whitespace, impossible lengths and
    non-canonical encodings (non-zero unused bits: one value must have exactly one encoding)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    tail = _CANONICAL_LAST.get(len(text) % 4)
    if tail is not None and text[-1] not in tail:
        raise ValueError("not canonical base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - guarded by the regex above
        raise ValueError("not base64url") from exc


def sha256_b64url(data: bytes) -> str:
    """base64url(SHA-256(data)): RFC 9449 ``ath`` (§4.2) and RFC 8705 ``x5t#S256`` (§3.1)."""
    return b64url_encode(hashlib.sha256(data).digest())
