"""Case registry and results: every (sub)case is one :class:`Result`.

Levels (docs/conformance-cases.md): ``M`` the RFC text requires it, ``S`` an RFC SHOULD or a strong
interoperability expectation, ``P`` this project's profile: a pinned choice where the RFCs leave
room, so results are deterministic. Only ``M`` failures fail a run unless ``--strict``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = {"M": "MUST", "S": "SHOULD", "P": "POLICY"}
LEVEL_MEANING = {
    "M": "required by the RFC text",
    "S": "RFC SHOULD or strong interoperability expectation",
    "P": "this project's profile: a pinned choice where the RFCs leave room",
}


@dataclass
class Result:
    """One line of the report: id, RFC reference, level, expected, got, outcome, reason."""

    id: str
    section: str
    ref: str
    level: str
    title: str
    expected: str
    got: str
    outcome: str  # "pass" | "fail" | "skip"
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The result for --json, with the level also spelled out (MUST / SHOULD / POLICY)."""
        return {**asdict(self), "level_name": LEVELS.get(self.level, self.level)}


@dataclass
class CaseDef:
    """A case (e.g. DPOP-RS-07, docs/conformance-cases.md) whose function records one result per sub-case."""

    id: str
    section: str
    ref: str
    level: str
    title: str
    func: Callable[..., None]
    order: int = 0
    sent: str = ""  # what the case sends (delta from the docs/conformance-cases.md, Notation baseline), for --list
    expect: str = ""  # what it expects, in the §0.2 notation, for --list


#: The reason of every result turned off by ``--skip-policy`` (the summary counts them).
POLICY_OFF_REASON = "policy case turned off (--skip-policy)"


class SkipCase(Exception):
    """Raised by a case to skip every sub-case not yet recorded, with a reason."""


@dataclass
class Recorder:
    """Collects the results of one case function."""

    case: CaseDef
    skip_policy: set[str]
    results: list[Result] = field(default_factory=list)

    def _id(self, sub: str) -> str:
        return self.case.id + sub

    def _policy_skipped(self, sub: str, level: str) -> bool:
        ids = {self.case.id, self._id(sub)}
        return level == "P" and bool(ids & self.skip_policy)

    def wants(self, sub: str = "", level: str | None = None) -> bool:
        """False when the operator turned this policy sub-case off (``--skip-policy``)."""
        return not self._policy_skipped(sub, level or self.case.level)

    def record(self, sub: str, expected: str, got: str, problem: str | None,
               level: str | None = None, note: str = "") -> None:
        lvl = level or self.case.level
        if self._policy_skipped(sub, lvl):
            self.policy_skip(sub, lvl, expected)
            return
        outcome = "pass" if problem is None else "fail"
        reason = problem or note
        self.results.append(Result(self._id(sub), self.case.section, self.case.ref, lvl,
                                   self.case.title, expected, got, outcome, reason))

    def skip(self, sub: str, reason: str, level: str | None = None, expected: str = "") -> None:
        self.results.append(Result(self._id(sub), self.case.section, self.case.ref,
                                   level or self.case.level, self.case.title, expected, "-",
                                   "skip", reason))

    def policy_skip(self, sub: str, level: str = "P", expected: str = "") -> None:
        self.skip(sub, POLICY_OFF_REASON, level, expected)


class Registry:
    """An ordered set of case definitions (one registry per suite section).

    ``families`` is the order of case families in docs/conformance-cases.md (``HDR``, ``DPOP``, …): cases run and are
    listed in that order, then in definition order, whatever order their modules were imported in.
    """

    def __init__(self, section: str, families: tuple[str, ...] = ()) -> None:
        self.section = section
        self.families = families
        self.cases: list[CaseDef] = []

    def case(self, case_id: str, ref: str, level: str, title: str, *, sent: str, expect: str,
             order: int = 0) -> Callable[[Callable[..., None]], Callable[..., None]]:
        """Register a case; ``sent``/``expect`` describe it for ``--list`` and docs/conformance-cases.md."""
        if level not in LEVELS:
            raise ValueError(f"{case_id}: level {level!r} is not one of {', '.join(LEVELS)}")

        def deco(func: Callable[..., None]) -> Callable[..., None]:
            self.cases.append(CaseDef(case_id, self.section, ref, level, title, func, order, sent, expect))
            return func
        return deco

    def _family_rank(self, case: CaseDef) -> int:
        family = case.id.split("-", 1)[0]
        return self.families.index(family) if family in self.families else len(self.families)

    def ordered(self) -> list[CaseDef]:
        """Run order: ``order`` tier (rotation cases last), spec family, then definition order."""
        return sorted(self.cases, key=lambda c: (c.order, self._family_rank(c)))  # stable sort


def run_case(case: CaseDef, ctx: Any, skip_policy: set[str]) -> list[Result]:
    """Run one case; a crash or skip is recorded, never propagated."""
    rec = Recorder(case, skip_policy)
    try:
        case.func(ctx, rec)
    except SkipCase as exc:
        if not rec.results:
            rec.skip("", str(exc))
    except OSError as exc:
        rec.results.append(Result(case.id, case.section, case.ref, case.level, case.title, "",
                                  "connection error", "fail", f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # noqa: BLE001 - a suite bug must not abort the run
        last = traceback.extract_tb(exc.__traceback__)[-1]
        rec.results.append(Result(case.id, case.section, case.ref, case.level, case.title, "",
                                  "suite error", "fail",
                                  f"{type(exc).__name__} at {last.filename.rsplit('/', 1)[-1]}:{last.lineno}"))
    return rec.results
