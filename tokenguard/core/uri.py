"""RFC 3986 §6.2.2-§6.2.3 normalisation of absolute http(s) URIs, for the DPoP ``htu`` comparison.

RFC 9449 §4.3 (9) compares ``htu`` with the target URI "without query and fragment", after syntax- and
scheme-based normalisation. Path case, trailing slashes and encoded reserved characters (``%2F``) are
significant and left alone (docs/rules.md, R-03).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from tokenguard.core.cache import BoundedCache

MAX_URI_LENGTH = 8192
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//([^/?#]*))?([^?#]*)(\?[^#]*)?(#.*)?$")
_ALLOWED = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
_PCT = re.compile(r"%(..)?")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class URIError(ValueError):
    """Not an absolute http(s) URI."""


def _normalize_percent(text: str) -> str:
    def fix(match: re.Match[str]) -> str:
        hexdigits = match.group(1)
        if hexdigits is None or not all(c in "0123456789abcdefABCDEF" for c in hexdigits):
            raise URIError("bad percent-encoding")
        char = chr(int(hexdigits, 16))
        return char if char in _UNRESERVED else "%" + hexdigits.upper()

    return _PCT.sub(fix, text)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    return result if result.startswith("/") else "/" + result


#: Clients send the same few URLs over and over; the budget bounds what unique ones can make it hold.
_NORMALIZED: BoundedCache[str, str] = BoundedCache(max_entries=4096, max_bytes=1 << 20)


def normalize_target(uri: object) -> str:
    """Cached :func:`_normalize_target` (only valid URIs are remembered, within a byte budget)."""
    if isinstance(uri, str):
        hit = _NORMALIZED.get(uri)
        if hit is not None:
            return hit
        result = _normalize_target(uri)
        _NORMALIZED.put(uri, result, 2 * len(uri) + 256)  # two strings and the entry's overhead
        return result
    return _normalize_target(uri)


def _normalize_target(uri: object) -> str:
    """Normalised ``scheme://host[:port]/path`` of an absolute http(s) URI, query and fragment dropped.

    Raises :class:`URIError` for anything that is not an absolute http(s) URI, carries userinfo, or
    has characters a URI cannot contain.
    """
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI_LENGTH or not _ALLOWED.match(uri):
        raise URIError("not a URI")
    match = _URI.match(uri)
    if match is None or match.group(2) is None:
        raise URIError("not an absolute URI")
    scheme = match.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        raise URIError("scheme is not http or https")
    authority = match.group(3)
    if "@" in authority:
        raise URIError("userinfo is not allowed")
    host, port = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise URIError("bad authority")
            port = rest[1:]
    elif ":" in authority:
        host, port = authority.rsplit(":", 1)
    if not host or not _HOST.match(host):
        raise URIError("bad host")
    if port and (not port.isdigit() or len(port) > 5 or int(port) > 65535):
        raise URIError("bad port")
    host = normalize_host(host)
    port = port.lstrip("0") or ("0" if port else "")
    if port == _DEFAULT_PORTS[scheme]:
        port = ""
    path = normalize_path(match.group(4) or "/")
    return f"{scheme}://{host}{':' + port if port else ''}{path}"


def normalize_host(host: str) -> str:
    """RFC 3986 §6.2.2.1-§6.2.2.2: case and percent-encoding normalised."""
    return _normalize_percent(host).lower()


def normalize_path(path: str) -> str:
    """RFC 3986 §6.2.2.2-§6.2.2.3: percent-encoding normalised, dot segments removed (case kept)."""
    return remove_dot_segments(_normalize_percent(path or "/"))


def has_query_parameter(query: str, name: str) -> bool:
    """Whether an ``application/x-www-form-urlencoded`` query names ``name`` (any case), as an
    upstream would decode it: ``&`` or ``;`` separated, percent- and ``+``-decoded names.

    RFC 6750 §2.3 ``access_token`` must be found however the client spells it (``%61ccess_token``).
    """
    lowered = query.lower()
    if name not in lowered and "%" not in lowered:
        return False
    for part in lowered.replace(";", "&").split("&"):
        key = part.partition("=")[0]
        if key == name or ("%" in key and unquote_plus(key, errors="replace").lower() == name):
            return True
    return False
