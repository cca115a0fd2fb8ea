"""Reports: a readable table, JSON, and JUnit XML; plus the exit-code rule.

Exit 1 on any failed MUST case; with ``strict`` also on failed SHOULD and POLICY cases (a policy
case that does not apply is turned off with ``--skip-policy`` and reported as a skip).
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable

from .model import LEVELS, Result


def group(result_id: str) -> str:
    """``DPOP-RS-07a`` → ``DPOP-RS`` (the spec's case family)."""
    parts = result_id.split("-")
    return "-".join(parts[:2]) if len(parts) >= 2 else result_id


def counts(results: Iterable[Result]) -> dict[str, dict[str, int]]:
    """Pass/fail/skip counts per case family and in total."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        out[group(r.id)][r.outcome] += 1
        out["total"][r.outcome] += 1
    return {k: {o: v.get(o, 0) for o in ("pass", "fail", "skip")} for k, v in out.items()}


def exit_code(results: Iterable[Result], strict: bool = False) -> int:
    fatal = {"M", "S", "P"} if strict else {"M"}
    return 1 if any(r.outcome == "fail" and r.level in fatal for r in results) else 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(results: list[Result], *, width: int | None = None) -> str:
    """Fixed-width table: id, level, RFC ref, expected, got, outcome and the reason."""
    cols = width or shutil.get_terminal_size((160, 24)).columns
    rows = [("ID", "L", "REF", "EXPECTED", "GOT", "RESULT")]
    for r in results:
        outcome = r.outcome.upper() + (f": {r.reason}" if r.reason else "")
        rows.append((r.id, r.level, r.ref, r.expected, r.got, outcome))
    widths = [14, 1, 30, 30, 36]
    lines = []
    for row in rows:
        cells = [_clip(c, w).ljust(w) for c, w in zip(row[:5], widths, strict=True)]
        line = "  ".join(cells) + "  " + row[5]
        lines.append(_clip(line, max(cols, 120)))
    lines.append("")
    lines.append(summary_text(results))
    return "\n".join(lines)


def summary_text(results: list[Result]) -> str:
    c = counts(results)
    fams = [f"{k}: {v['pass']}/{v['fail']}/{v['skip']}" for k, v in sorted(c.items()) if k != "total"]
    t = c.get("total", {"pass": 0, "fail": 0, "skip": 0})
    failed = Counter(r.level for r in results if r.outcome == "fail")
    by_level = ", ".join(f"{LEVELS[lv]} {failed.get(lv, 0)}" for lv in ("M", "S", "P"))
    return (f"pass/fail/skip per family — {'; '.join(fams)}\n"
            f"total: {t['pass']} passed, {t['fail']} failed ({by_level}), {t['skip']} skipped")


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
    """``DPOP-RS-07a`` → ``DPOP`` (the spec's §1/§2 sub-section prefix)."""
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
