"""Reports: a readable table, JSON, and JUnit XML; plus the exit-code rule.

Exit 1 on any failed MUST case; with ``strict`` also on failed SHOULD and POLICY cases (a policy
case that does not apply is turned off with ``--skip-policy`` and reported as a skip). Reasons are
never clipped in JSON or JUnit; the table clips to the terminal unless ``verbose``.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable

from .model import LEVEL_MEANING, LEVELS, POLICY_OFF_REASON, Result


def group(result_id: str) -> str:
    """``DPOP-RS-07a`` → ``DPOP-RS`` (the case family)."""
    parts = result_id.split("-")
    return "-".join(parts[:2]) if len(parts) >= 2 else result_id


def counts(results: Iterable[Result]) -> dict[str, dict[str, int]]:
    """Pass/fail/skip counts per case family and in total."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        out[group(r.id)][r.outcome] += 1
        out["total"][r.outcome] += 1
    return {k: {o: v.get(o, 0) for o in ("pass", "fail", "skip")} for k, v in out.items()}


#: Exit statuses of ``tokenguard conformance`` (docs/conformance.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SETUP = 0, 1, 2, 3


def exit_code(results: Iterable[Result], strict: bool = False) -> int:
    """1 if a MUST case failed (with ``strict``: any case); 0 otherwise."""
    fatal = {"M", "S", "P"} if strict else {"M"}
    return EXIT_FAILED if any(r.outcome == "fail" and r.level in fatal for r in results) else EXIT_OK


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


_COLOURS = {"pass": "\033[32m", "fail": "\033[31m", "skip": "\033[33m"}
_RESET = "\033[0m"
_WIDTHS = (14, 6, 22, 26, 30)  # ID, LEVEL, REF, EXPECTED, GOT; RESULT takes the rest


def table(results: list[Result], *, width: int | None = None, verbose: bool = False,
          colour: bool = False) -> str:
    """Fixed-width table: id, level, RFC ref, expected, got, outcome and the reason.

    Without ``verbose`` the columns and the line are clipped to the terminal (``…`` marks a cut);
    with it nothing is clipped, so every reason is printed in full (``--json`` and ``--junit`` never
    clip either).
    """
    cols = max(width or shutil.get_terminal_size((160, 24)).columns, 120)
    lines = []
    header = ("ID", "LEVEL", "REF", "EXPECTED", "GOT")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, _WIDTHS, strict=True)) + "  RESULT")
    for r in results:
        cells = (r.id, LEVELS.get(r.level, r.level), r.ref, r.expected, r.got)
        if verbose:
            left = "  ".join(c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=True))
        else:
            left = "  ".join(_clip(c, w).ljust(w) for c, w in zip(cells, _WIDTHS, strict=True))
        word = r.outcome.upper()
        reason = f": {r.reason}" if r.reason else ""
        room = cols - len(left) - 2 - len(word)
        tail = reason if verbose else _clip(reason, max(room, 0))
        shown = f"{_COLOURS[r.outcome]}{word}{_RESET}" if colour and r.outcome in _COLOURS else word
        lines.append(f"{left}  {shown}{tail}")
    lines.append("")
    lines.append(summary_text(results))
    return "\n".join(lines)


def summary_text(results: list[Result]) -> str:
    """Counts per level (POLICY explained), what --skip-policy turned off, and per family."""
    by_level: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        by_level[r.level][r.outcome] += 1
    lines = []
    for lv in ("M", "S", "P"):
        c = by_level.get(lv, Counter())
        lines.append(f"{LEVELS[lv]:7} {c['pass']:4} passed, {c['fail']:3} failed, {c['skip']:3} skipped"
                     f"   ({LEVEL_MEANING[lv]})")
    off = [r.id for r in results if r.outcome == "skip" and r.reason == POLICY_OFF_REASON]
    if off:
        lines.append(f"--skip-policy turned off {len(off)} result{'s' if len(off) != 1 else ''}: {', '.join(off)}")
    policy_fails = [r.id for r in results if r.outcome == "fail" and r.level == "P"]
    if policy_fails:
        lines.append(f"POLICY failures ({', '.join(policy_fails)}) are deviations from this project's profile, not "
                     "from an RFC; they fail the run only with --strict (turn one off with --skip-policy ID).")
    families = counts(results)
    fams = [f"{k}: {v['pass']}/{v['fail']}/{v['skip']}" for k, v in sorted(families.items()) if k != "total"]
    lines.append(f"pass/fail/skip per family — {'; '.join(fams)}")
    t = families.get("total", {"pass": 0, "fail": 0, "skip": 0})
    lines.append(f"total: {t['pass']} passed, {t['fail']} failed, {t['skip']} skipped")
    return "\n".join(lines)


def to_json(results: list[Result]) -> str:
    return json.dumps({"summary": counts(results), "results": [r.as_dict() for r in results]}, indent=2)


def to_junit(results: list[Result]) -> bytes:
    """JUnit XML: one ``testsuite`` per case family, one ``testcase`` per (sub)case."""
    suites = ET.Element("testsuites", name="tokenguard-conformance")
    by_family: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_family[group(r.id)].append(r)
    for fam, items in by_family.items():
        c = Counter(r.outcome for r in items)
        suite = ET.SubElement(suites, "testsuite", name=fam, tests=str(len(items)),
                              failures=str(c.get("fail", 0)), skipped=str(c.get("skip", 0)), errors="0")
        for r in items:
            tc = ET.SubElement(suite, "testcase", classname=f"conformance.{fam}",
                               name=f"{r.id} [{LEVELS.get(r.level, r.level)}] {r.title}")
            ET.SubElement(tc, "system-out").text = f"ref: {r.ref}\nexpected: {r.expected}\ngot: {r.got}"
            if r.outcome == "fail":
                ET.SubElement(tc, "failure", message=r.reason or "failed",
                              type=LEVELS.get(r.level, r.level)).text = f"expected {r.expected}; got {r.got}"
            elif r.outcome == "skip":
                ET.SubElement(tc, "skipped", message=r.reason)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def section(result_id: str) -> str:
    """``DPOP-RS-07a`` → ``DPOP`` (the §1/§2 section prefix of docs/conformance-cases.md)."""
    return result_id.split("-", 1)[0]


def section_counts(results: Iterable[Result]) -> str:
    """One line per spec section (HDR, DPOP, NONCE, …): pass/fail/skip, for CI logs."""
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        by[section(r.id)][r.outcome] += 1
        by["total"][r.outcome] += 1
    order = ["BASE", "HDR", "DPOP", "NONCE", "BIND", "MTLS", "JWT", "SCOPE", "META", "TOK", "JKT", "RT",
             "INT", "FMT"]
    keys = [k for k in order if k in by] + sorted(k for k in by if k not in order and k != "total")
    lines = [f"{'section':8} {'pass':>5} {'fail':>5} {'skip':>5}"]
    for k in [*keys, "total"]:
        c = by[k]
        lines.append(f"{k:8} {c['pass']:>5} {c['fail']:>5} {c['skip']:>5}")
    return "\n".join(lines)
