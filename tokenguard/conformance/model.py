"""Case registry and results: every (sub)case of the spec is one :class:`Result`."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = {"M": "MUST", "S": "SHOULD", "P": "POLICY"}


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
        return asdict(self)


@dataclass
class CaseDef:
    """A spec case (e.g. DPOP-RS-07) whose function records one result per sub-case."""

    id: str
    section: str
    ref: str
    level: str
    title: str
    func: Callable[..., None]
    order: int = 0


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
        outcome = "pass" if problem is None else "fail"
        reason = problem or note
        self.results.append(Result(self._id(sub), self.case.section, self.case.ref, lvl,
                                   self.case.title, expected, got, outcome, reason))

    def skip(self, sub: str, reason: str, level: str | None = None, expected: str = "") -> None:
        self.results.append(Result(self._id(sub), self.case.section, self.case.ref,
                                   level or self.case.level, self.case.title, expected, "-",
                                   "skip", reason))

    def policy_skip(self, sub: str, level: str = "P", expected: str = "") -> None:
        self.skip(sub, "policy case turned off (--skip-policy)", level, expected)


class Registry:
    """An ordered set of case definitions (one registry per suite section)."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.cases: list[CaseDef] = []

    def case(self, case_id: str, ref: str, level: str, title: str,
             order: int = 0) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def deco(func: Callable[..., None]) -> Callable[..., None]:
            self.cases.append(CaseDef(case_id, self.section, ref, level, title, func, order))
            return func
        return deco

    def ordered(self) -> list[CaseDef]:
        return sorted(self.cases, key=lambda c: c.order)  # stable: definition order within a tier


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
