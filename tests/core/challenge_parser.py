"""A small RFC 9110 §11.6.1 ``WWW-Authenticate`` parser for the tests.

``challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``; several challenges per field value,
several field lines, any parameter order, quoted-string values with quoted-pairs. Parameter names
are case-insensitive; a parameter given twice in one challenge is an error (RFC 6750 §3, R-01).
Written independently of ``tokenguard.challenges`` so the tests do not trust the code under test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))")
_PARAM_START = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=(?!=)")
_OWS = re.compile(r"[ \t]*")


class ChallengeSyntaxError(ValueError):
    pass


@dataclass
class Challenge:
    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())


def _quoted(text: str, pos: int) -> tuple[str, int]:
    assert text[pos] == '"'
    pos += 1
    out = []
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            if pos + 1 >= len(text):
                raise ChallengeSyntaxError("dangling quoted-pair")
            out.append(text[pos + 1])
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise ChallengeSyntaxError("unterminated quoted-string")


def _skip(text: str, pos: int) -> int:
    return _OWS.match(text, pos).end()


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` field values into challenges, in order."""
    text = ", ".join(values)
    challenges: list[Challenge] = []
    pos = 0
    while True:
        # skip empty list elements (RFC 9110 §5.6.1)
        while True:
            pos = _skip(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            break
        if pos >= len(text):
            return challenges
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ChallengeSyntaxError(f"expected auth-scheme at {pos}: {text[pos:pos + 20]!r}")
        current = Challenge(match.group(0))
        challenges.append(current)
        pos = match.end()
        if pos < len(text) and text[pos] not in " ,":
            raise ChallengeSyntaxError("auth-scheme must be followed by SP or ','")
        pos = _skip(text, pos)
        if pos >= len(text):
            return challenges
        if text[pos] == ",":
            continue
        t68 = _TOKEN68.match(text, pos)
        if t68 is not None and _PARAM_START.match(text, pos) is None:
            current.token68 = t68.group(0)
            pos = t68.end()
            continue
        # #auth-param
        while True:
            name_match = _TOKEN.match(text, pos)
            if name_match is None:
                raise ChallengeSyntaxError(f"expected auth-param at {pos}")
            name = name_match.group(0).lower()
            pos = _skip(text, name_match.end())
            if pos >= len(text) or text[pos] != "=":
                raise ChallengeSyntaxError("expected '=' in auth-param")
            pos = _skip(text, pos + 1)
            if pos < len(text) and text[pos] == '"':
                value, pos = _quoted(text, pos)
            else:
                value_match = _TOKEN.match(text, pos)
                if value_match is None:
                    raise ChallengeSyntaxError("auth-param value must be a token or quoted-string")
                value, pos = value_match.group(0), value_match.end()
            if name in current.params:
                raise ChallengeSyntaxError(f"parameter {name} repeated in challenge {current.scheme}")
            current.params[name] = value
            pos = _skip(text, pos)
            if pos >= len(text):
                return challenges
            if text[pos] != ",":
                raise ChallengeSyntaxError(f"expected ',' at {pos}")
            while pos < len(text) and text[pos] in ", \t":
                pos += 1
            if pos >= len(text):
                return challenges
            if _PARAM_START.match(text, pos) is None:
                break  # the next list element starts a new challenge
