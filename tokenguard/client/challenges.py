"""Parse ``WWW-Authenticate`` challenge lists (RFC 9110 §11.6.1, §11.3): never compare the header as a string.

A client's job (nonce retry, error reporting) and the conformance suite's (judging a verifier): this
module imports nothing from the verifier, so the suite does not judge the verifier with its own code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# -- parsing (RFC 9110 §11.6.1 / §11.3): never compare the header as a string ---------------------
#
#     WWW-Authenticate = [ challenge *( OWS "," OWS challenge ) ]
#     challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
#     auth-param = token BWS "=" BWS ( token / quoted-string )
#
# Several header lines are one comma-joined list (RFC 9110 §5.3). Scheme and parameter names are
# case-insensitive; parameter values are kept as received (quoted-pair unescaped).

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_OWS = r"[ \t]*"
_RE_TOKEN = re.compile(_TOKEN)
_RE_PARAM = re.compile(rf"({_TOKEN}){_OWS}={_OWS}(?:\"((?:[^\"\\]|\\.)*)\"|({_TOKEN}))")
_RE_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_RE_UNESCAPE = re.compile(r"\\(.)")


class ChallengeSyntaxError(ValueError):
    """The header value is not a valid RFC 9110 §11.6.1 challenge list."""


@dataclass
class Challenge:
    """One challenge: scheme, auth-params (names lower-cased) or a token68."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None
    duplicate_params: list[str] = field(default_factory=list)

    def is_scheme(self, name: str) -> bool:
        return self.scheme.lower() == name.lower()

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())

    @property
    def error(self) -> str | None:
        return self.get("error")


def _skip(s: str, i: int, chars: str = " \t") -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _at_list_boundary(s: str, i: int) -> bool:
    j = _skip(s, i)
    return j >= len(s) or s[j] == ","


def parse_challenges(values: str | list[str]) -> list[Challenge]:
    """Parse one or several ``WWW-Authenticate`` field values into challenges, in order."""
    text = ", ".join(values) if isinstance(values, list) else values
    out: list[Challenge] = []
    i = 0
    n = len(text)
    current: Challenge | None = None
    while True:
        i = _skip(text, i, " \t,")
        if i >= n:
            break
        # An auth-param continues the current challenge; anything else starts a new one.
        m = _RE_PARAM.match(text, i)
        if current is not None and m and _at_list_boundary(text, m.end()):
            name = m.group(1).lower()
            value = _RE_UNESCAPE.sub(r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
            if name in current.params:
                current.duplicate_params.append(name)
            else:
                current.params[name] = value
            i = m.end()
            continue
        sm = _RE_TOKEN.match(text, i)
        if not sm:
            raise ChallengeSyntaxError(f"expected auth-scheme at offset {i}")
        current = Challenge(scheme=sm.group(0))
        out.append(current)
        i = sm.end()
        if i >= n or text[i] == ",":
            continue
        if text[i] not in " \t":
            raise ChallengeSyntaxError(f"expected SP after auth-scheme at offset {i}")
        i = _skip(text, i)
        m = _RE_PARAM.match(text, i)
        if m and _at_list_boundary(text, m.end()):
            continue  # the loop picks the first auth-param up
        t = _RE_TOKEN68.match(text, i)
        if t and _at_list_boundary(text, t.end()):
            current.token68 = t.group(0)
            i = t.end()
            current = None  # token68 challenges take no params
            continue
        raise ChallengeSyntaxError(f"malformed challenge parameters at offset {i}")
    return out


def find(challenges: list[Challenge], scheme: str) -> list[Challenge]:
    """All challenges of ``scheme`` (case-insensitive, RFC 9110 §11.1)."""
    return [c for c in challenges if c.is_scheme(scheme)]


def summarize(challenges: list[Challenge]) -> str:
    """Safe one-line summary: scheme and ``error`` only (never descriptions or token material)."""
    parts = []
    for c in challenges:
        err = c.error
        parts.append(f"{c.scheme}({err})" if err else c.scheme)
    return " ".join(parts) if parts else "no-challenge"
