"""Why a request was decided the way it was: every check in order, with what was expected and what was got.

``Verifier.decide(request, trace=Trace())`` hands a collector down to each check -- route, credentials,
access token (RFC 9068 / RFC 7662), binding (RFC 7800 ``cnf``), DPoP proof (RFC 9449 §4.3), certificate
(RFC 8705 §3), scopes and claims -- and each reports one :class:`Check`. The checks are the verifier's
own code, so an explanation cannot drift from a decision. With ``trace=None`` (the service's hot path) a
check costs one ``is not None`` test.

Two users: ``tokenguard explain`` (``Trace(read_only=True)``: the replay store is asked whether a proof
was seen, never written) and ``server.log_explain`` (the same checks in a denied request's log line,
through :meth:`Trace.for_log`). A check records what the verifier compared -- header members, claims,
thumbprints, counts -- never an access token, a proof, a signature or a key.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

#: How a value the verifier compared is shown when it is absent from the token or proof.
ABSENT = "(absent)"
#: Log lines carry at most this many characters of any one value (attacker-controlled text, truncated).
LOG_VALUE_LIMIT = 80
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def shown(value: Any) -> str:
    """A compared value as text: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except ValueError:  # a circular structure cannot come from JSON; say so rather than fail
        return f"<{type(value).__name__}>"


class Check(NamedTuple):
    """One check: its name, the RFC section (or configuration key) it enforces, and its outcome."""

    step: str
    section: str
    ok: bool
    expected: str = ""
    got: str = ""


class Trace:
    """The checks of one decision, in the order the verifier ran them.

    ``read_only``: nothing may be recorded on the verifier's behalf (``explain``): the DPoP replay check
    asks the store whether the proof was seen instead of consuming its ``jti``. Values are kept as the
    checks hand them over and turned into text only when read (``server.log_explain`` traces every request).
    """

    __slots__ = ("_raw", "read_only")

    def __init__(self, *, read_only: bool = False) -> None:
        self._raw: list[tuple[str, str, bool, Any, Any]] = []
        self.read_only = read_only

    def add(self, step: str, section: str, ok: bool, expected: Any = "", got: Any = "") -> None:
        self._raw.append((step, section, ok, expected, got))

    @property
    def checks(self) -> list[Check]:
        return [Check(step, section, ok, shown(expected), shown(got)) for step, section, ok, expected, got
                in self._raw]

    @property
    def failed(self) -> Check | None:
        """The check that decided a denial (the last one that failed), or None."""
        return next((check for check in reversed(self.checks) if not check.ok), None)

    def for_log(self) -> list[dict[str, Any]]:
        """The checks for a log line: every value truncated and restricted to printable ASCII."""

        def clean(text: str) -> str:
            cut = _UNPRINTABLE.sub("?", text[:LOG_VALUE_LIMIT + 1])
            return cut if len(cut) <= LOG_VALUE_LIMIT else cut[:LOG_VALUE_LIMIT - 3] + "..."

        return [{"check": check.step, "rfc": check.section, "ok": check.ok,
                 "expected": clean(check.expected), "got": clean(check.got)} for check in self.checks]
