"""Access tokens and proofs as a client holds them: read from files or responses, decoded for display.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokenguard.client.errors import ClientError
from tokenguard.client.keys import read_text
from tokenguard.core.jws import JWSError, parse_compact
from tokenguard.core.uri import URIError, normalize_target


def read_token(value: str) -> tuple[str, str | None]:
    """An access token from a literal, ``@file`` or ``-``; a token response JSON is accepted too.

    Returns ``(access_token, token_type)``; ``token_type`` is only known from a token response.
    """
    from_file = value == "-" or value.startswith("@")
    if not from_file and _names_a_file(value):
        raise ClientError(f"--token {value!r} names a file, and a value without @ is sent as the token itself; "
                          f"read the file with --token @{value}")
    text = (read_text(value, "token") if from_file else value).strip()
    where = ("stdin" if value == "-" else value[1:]) if from_file else "--token"
    if text.startswith("{"):
        try:
            response = json.loads(text)
        except ValueError:
            raise ClientError(f"token from {where} looks like JSON but does not parse") from None
        token = response.get("access_token") if isinstance(response, dict) else None
        if not isinstance(token, str) or not token:
            raise ClientError(f"token from {where}: the JSON has no access_token")
        token_type = response.get("token_type")
        return token, token_type if isinstance(token_type, str) else None
    if not text:
        raise ClientError(f"token from {where} is empty")
    if any(c.isspace() for c in text):
        raise ClientError(f"token from {where} contains whitespace")
    return text, None


def _names_a_file(value: str) -> bool:
    """A ``--token`` value that is a file name, not a token (no JWT or opaque token ends in ``.json``)."""
    if value.endswith((".json", ".txt", ".jwt")):
        return True
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # too long for a file name, or a NUL: a token, not a path
        return False


def expiry_warning(token: str, now: float | None = None) -> str | None:
    """A warning when a JWT access token's ``exp`` has passed (read without verification), else None."""
    try:
        exp = parse_compact(token).payload.get("exp")
    except JWSError:
        return None  # opaque: only the server knows
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    ago = int((time.time() if now is None else now) - exp)
    if ago < 0:
        return None
    return (f"the access token expired {ago} s ago (exp {int(exp)}); the server will refuse it (token_expired): "
            "get a new one with `tokenguard token`")


def token_cnf(token: str) -> dict[str, Any] | None:
    """The ``cnf`` claim of a JWT access token, read without verification (None for opaque tokens).

    Only used to choose the ``Authorization`` scheme; the resource server does the verifying.
    """
    try:
        claims = parse_compact(token).payload
    except JWSError:
        return None
    cnf = claims.get("cnf")
    return cnf if isinstance(cnf, dict) else {}


def decode_proof(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a proof, for display (the signature is dropped)."""
    jws = parse_compact(proof)
    return jws.header, jws.payload


def check_http_url(url: str, what: str = "URL") -> str:
    """``url`` if it is an absolute http(s) URL (what ``htu`` must be, RFC 9449 §4.2)."""
    try:
        normalize_target(url)
    except URIError as exc:
        raise ClientError(f"{what} {url!r} is not an absolute http(s) URL ({exc})") from None
    return url


def htu_of(url: str) -> str:
    """RFC 9449 §4.2 ``htu``: the target URI without query and fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
