"""One place that turns a :class:`~tokenguard.core.decision.Decision` into an HTTP answer, per proxy mode.

* allow: ``200`` with the identity headers (``X-Auth-*`` and the route's claim mappings);
* deny: ``401``/``403`` with one challenge per offered scheme (RFC 6750 §3, RFC 9449 §7.1),
  ``Cache-Control: no-store`` and ``X-Auth-Error``; in ``auth_request`` mode an RFC ``400`` becomes
  ``401`` with the same challenge, because nginx turns anything but 2xx/401/403 into 500;
* unavailable: the configured fail-closed status (``500`` default, ``503`` or ``401``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tokenguard.core.bindings.base import Binding
from tokenguard.core.decision import Decision, Outcome
from tokenguard.core.policy.claims import MISSING, claim_at
from tokenguard.web.challenges import www_authenticate

Headers = list[tuple[str, str]]
_THUMBPRINT_HEADERS = {Binding.DPOP: "X-Auth-Jkt", Binding.MTLS: "X-Auth-X5t-S256"}


def header_value(value: Any) -> str:
    """A claim as a header value: strings as-is, lists space-joined, non-printable bytes escaped."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value)
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    if text.isprintable() and text.isascii():
        return text
    return quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP answer to one auth sub-request, and the decision it came from."""

    status: int
    headers: Headers
    decision: Decision

    @property
    def allow(self) -> bool:
        return self.decision.allow

    @property
    def reason(self) -> str:
        return self.decision.reason

    @property
    def description(self) -> str:
        """The safe ``error_description`` of a denial (RFC 6750 §3 charset, never token content)."""
        return self.decision.error.description if self.decision.error is not None else ""

    @property
    def binding(self) -> Binding | None:
        return self.decision.binding

    @property
    def error(self) -> str | None:
        return self.decision.error.error if self.decision.error is not None else None


@dataclass(frozen=True)
class Responder:
    """Renders decisions for one deployment: realm, proxy mode, DPoP algs and fail-closed status."""

    realm: str = "tokenguard"
    auth_request_mode: bool = True
    dpop_algs: Sequence[str] = ()
    fail_status: int = 500

    def render(self, decision: Decision) -> Answer:
        if decision.outcome is Outcome.ALLOW:
            return Answer(200, self._identity(decision), decision)
        if decision.outcome is Outcome.DENY:
            return self._deny(decision)
        headers: Headers = [("Cache-Control", "no-store"), ("X-Auth-Error", decision.reason)]
        if self.fail_status == 401:
            headers.insert(0, ("WWW-Authenticate", self._challenge(decision, error_on=())))
        return Answer(self.fail_status, headers, decision)

    def _challenge(self, decision: Decision, error_on: Sequence[str]) -> str:
        return www_authenticate([s.value for s in decision.offered], realm=self.realm, error=decision.error,
                                error_on=error_on, dpop_algs=self.dpop_algs)

    def _deny(self, decision: Decision) -> Answer:
        error = decision.error
        status = 401 if error is None else error.status
        if status == 400 and self.auth_request_mode:
            status = 401  # nginx turns anything but 2xx/401/403 into 500 (docs/rules.md, R-14)
        headers: Headers = [("WWW-Authenticate", self._challenge(decision, [s.value for s in decision.error_on])),
                            ("Cache-Control", "no-store")]
        if decision.nonce is not None and (status == 401 or error is not None and error.error == "use_dpop_nonce"):
            headers.append(("DPoP-Nonce", decision.nonce))
        headers.append(("X-Auth-Error", decision.reason))
        return Answer(status, headers, decision)

    def _identity(self, decision: Decision) -> Headers:
        access = decision.access
        assert access is not None and decision.binding is not None
        headers = [("X-Auth-Subject", header_value(access.subject)),
                   ("X-Auth-Client-Id", header_value(access.client_id)),
                   ("X-Auth-Scope", header_value(" ".join(decision.scopes))),
                   ("X-Auth-Binding", decision.binding.value)]
        thumbprint_header = _THUMBPRINT_HEADERS.get(decision.binding)
        if thumbprint_header and decision.thumbprint:
            headers.append((thumbprint_header, decision.thumbprint))
        if decision.route is not None:
            for name, path in decision.route.headers:
                value = claim_at(access.claims, path)
                if value is not None and value is not MISSING:
                    headers.append((name, header_value(value)))
        if decision.nonce is not None:
            headers += [("DPoP-Nonce", decision.nonce), ("Cache-Control", "no-store")]
        return headers
