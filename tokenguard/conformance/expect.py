"""Expected outcomes in the notation of docs/conformance-cases.md, Notation, checked against parsed challenges.

``401·∅``, ``401·D(e)``, ``401·B(e)``, ``+N``, ``403·X(insufficient_scope)`` and
``400*·X(invalid_request)`` each become an :class:`Expect` whose checks return the first
deviation as a short, safe message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tokenguard.client.challenges import Challenge, find

from .transport import Response

Check = Callable[[Response], str | None]

#: RFC 9449 §8: ``DPoP-Nonce = 1*NQCHAR``.
NONCE_RE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")
#: RFC 6750 §3: ``error`` / ``error_description`` characters.
ERROR_CHARS_RE = re.compile(r"^[\x20-\x21\x23-\x5B\x5D-\x7E]*$")


@dataclass
class Expect:
    """Allowed statuses plus challenge checks; ``text`` is the ``expected`` column."""

    text: str
    statuses: frozenset[int]
    checks: list[Check] = field(default_factory=list)

    def judge(self, resp: Response) -> str | None:
        """None when ``resp`` meets the expectation, else why not."""
        if resp.status not in self.statuses:
            return f"status {resp.status}, expected {'/'.join(str(s) for s in sorted(self.statuses))}"
        for check in self.checks:
            problem = check(resp)
            if problem:
                return problem
        return None

    def plus(self, *checks: Check, suffix: str = "") -> Expect:
        return Expect(self.text + suffix, self.statuses, [*self.checks, *checks])


@dataclass
class Profile:
    """What the verifier under test is configured with (docs/conformance-cases.md, Notation defaults)."""

    algs: tuple[str, ...] = ("ES256", "PS256", "EdDSA")
    rfc400_status: frozenset[int] = frozenset({401})  # auth_request mode, rule R-14


def _parseable(resp: Response) -> str | None:
    if resp.challenge_error:
        return f"WWW-Authenticate unparseable: {resp.challenge_error}"
    for c in resp.challenges:
        if c.duplicate_params:
            return f"{c.scheme} challenge repeats {','.join(c.duplicate_params)} (RFC 6750 §3)"
        for name in ("error", "error_description"):
            value = c.get(name)
            if value is not None and not ERROR_CHARS_RE.match(value):
                return f"{c.scheme} {name} has characters outside RFC 6750 §3"
    return None


def _one(resp: Response, scheme: str) -> tuple[Challenge | None, str | None]:
    found = find(resp.challenges, scheme)
    if not found:
        return None, f"no {scheme} challenge"
    if len(found) > 1:
        return None, f"{len(found)} {scheme} challenges"
    return found[0], None


def _dpop_algs(profile: Profile) -> Check:
    """RFC 9449 §7.1: the DPoP challenge carries ``algs`` = the allow-list, never ``none``."""
    def check(resp: Response) -> str | None:
        c, problem = _one(resp, "DPoP")
        if problem or c is None:
            return problem
        algs = c.get("algs")
        if algs is None:
            return "DPoP challenge without algs"
        listed = algs.split()
        if "none" in (a.lower() for a in listed):
            return "algs lists none"
        if set(listed) != set(profile.algs):
            return f'algs="{algs}", expected "{" ".join(profile.algs)}"'
        return None
    return check


def _error_on(scheme: str, error: str | None) -> Check:
    def check(resp: Response) -> str | None:
        c, problem = _one(resp, scheme)
        if problem or c is None:
            return problem
        if c.error != error:
            want = f'error="{error}"' if error else "no error"
            return f"{scheme} error={c.error or '-'}, expected {want}"
        return None
    return check


def _no_error_if_present(scheme: str) -> Check:
    def check(resp: Response) -> str | None:
        for c in find(resp.challenges, scheme):
            if c.error:
                return f"{scheme} challenge also carries error={c.error}"
        return None
    return check


def ok() -> Expect:
    return Expect("200", frozenset({200}))


def empty_401(p: Profile) -> Expect:
    """``401·∅`` (RFC 9449 §7.2 Fig 17): Bearer and DPoP(algs) challenges, no error anywhere."""
    return Expect("401·∅", frozenset({401}), [
        _parseable, _error_on("Bearer", None), _error_on("DPoP", None), _dpop_algs(p)])


def dpop_error(p: Profile, error: str, statuses: frozenset[int] = frozenset({401})) -> Expect:
    """``401·D(e)``: the DPoP challenge has the error and ``algs``; a Bearer one has none."""
    code = "/".join(str(s) for s in sorted(statuses))
    return Expect(f"{code}·D({error})", statuses, [
        _parseable, _error_on("DPoP", error), _dpop_algs(p), _no_error_if_present("Bearer")])


def bearer_error(p: Profile, error: str, statuses: frozenset[int] = frozenset({401})) -> Expect:
    """``401·B(e)`` (RFC 9449 §7.2 Fig 18): Bearer has the error; DPoP(algs) has none."""
    code = "/".join(str(s) for s in sorted(statuses))
    return Expect(f"{code}·B({error})", statuses, [
        _parseable, _error_on("Bearer", error), _error_on("DPoP", None), _dpop_algs(p)])


def error_on_either(p: Profile, error: str, statuses: frozenset[int] = frozenset({401})) -> Expect:
    """``error`` on the Bearer or the DPoP challenge (BIND-RS-04: node puts it on DPoP)."""
    def check(resp: Response) -> str | None:
        errors = {c.error for c in resp.challenges if c.is_scheme("Bearer") or c.is_scheme("DPoP")}
        return None if error in errors else f'no challenge with error="{error}"'
    code = "/".join(str(s) for s in sorted(statuses))
    return Expect(f"{code}·(B|D)({error})", statuses, [_parseable, check, _dpop_algs(p)])


def rfc400_dpop(p: Profile, error: str = "invalid_request") -> Expect:
    """``400*·D(e)``: RFC-level 400; 401 with the same challenge in auth_request mode (R-14)."""
    e = dpop_error(p, error, p.rfc400_status)
    e.text = "400*·D(" + error + ")"
    return e


def rfc400_bearer(p: Profile, error: str = "invalid_request") -> Expect:
    e = bearer_error(p, error, p.rfc400_status)
    e.text = "400*·B(" + error + ")"
    return e


def rfc400_both(p: Profile, error: str = "invalid_request") -> Expect:
    """HDR-RS-05 (RFC 9449 §7.2 Fig 19): both challenges carry the error."""
    return Expect(f"400*·B+D({error})", p.rfc400_status, [
        _parseable, _error_on("Bearer", error), _error_on("DPoP", error), _dpop_algs(p)])


def insufficient_scope(p: Profile, scheme: str, scope: str) -> Expect:
    """``403·X(insufficient_scope)`` with ``scope`` naming the needed scope (RFC 6750 §3.1)."""
    def scope_check(resp: Response) -> str | None:
        c, problem = _one(resp, scheme)
        if problem or c is None:
            return problem
        listed = (c.get("scope") or "").split()
        return None if scope in listed else f'{scheme} scope="{c.get("scope") or ""}", expected {scope}'
    checks: list[Check] = [_parseable, _error_on(scheme, "insufficient_scope"), scope_check]
    if scheme == "DPoP":
        checks.append(_dpop_algs(p))
    return Expect(f"403·{scheme[0]}(insufficient_scope, scope={scope})", frozenset({403}), checks)


def not_allowed(statuses: frozenset[int] = frozenset({401, 403, 500, 502, 503, 504})) -> Expect:
    """Fail closed: anything but an allow (JWT-RS-13(b))."""
    return Expect("never 200 (401 or 5xx)", statuses)


def cache_no_store(resp: Response) -> str | None:
    """RFC 9449 §8.2 / RFC 6749 §5.1: ``Cache-Control: no-store``."""
    directives = {d.strip().split("=")[0].lower() for v in resp.all("Cache-Control") for d in v.split(",")}
    return None if "no-store" in directives else "no Cache-Control: no-store"


def one_nonce(resp: Response) -> str | None:
    """``+N``: exactly one ``DPoP-Nonce`` of ``1*NQCHAR`` (RFC 9449 §8) and no-store."""
    values = resp.all("DPoP-Nonce")
    if len(values) != 1:
        return f"{len(values)} DPoP-Nonce headers, expected exactly 1"
    if not NONCE_RE.match(values[0]):
        return "DPoP-Nonce is not 1*NQCHAR"
    return cache_no_store(resp)


def with_nonce(e: Expect) -> Expect:
    return e.plus(one_nonce, suffix="+N")


def any_of(*options: Expect) -> Expect:
    """Pass if any option passes (e.g. DPOP-RS-31: invalid_dpop_proof or use_dpop_nonce+N)."""
    statuses = frozenset().union(*(o.statuses for o in options))

    def check(resp: Response) -> str | None:
        problems = [o.judge(resp) for o in options]
        return None if any(pr is None for pr in problems) else problems[0]
    return Expect(" or ".join(o.text for o in options), statuses, [check])
