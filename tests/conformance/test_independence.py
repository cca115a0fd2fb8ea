"""Issue 12: the suite shares no code with the verifier it judges.

Inside ``tokenguard`` it may import only itself and the stdlib-only challenge parser of the client;
outside, only the stdlib and ``cryptography`` (never the JOSE or web libraries the verifier is built
on, so a bug there cannot hide in both the verifier and its judge).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tokenguard" / "conformance"
ALLOWED_TOKENGUARD = ("tokenguard.conformance", "tokenguard.client.challenges")
ALLOWED_THIRD_PARTY = {"cryptography"}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported by one file (relative imports resolve inside the package)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_package_imports_only_itself_the_challenge_parser_stdlib_and_cryptography() -> None:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "tokenguard":
                ok = any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED_TOKENGUARD)
            else:
                ok = top in sys.stdlib_module_names or top == "__future__" or top in ALLOWED_THIRD_PARTY
            if not ok:
                bad.append(f"{path.relative_to(PACKAGE.parent.parent)}: {name}")
    assert not bad, "the conformance suite must not share code with the verifier:\n" + "\n".join(bad)


def test_importing_the_suite_loads_no_verifier_module() -> None:
    code = ("import sys, tokenguard.conformance.runner\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('tokenguard.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    foreign = [m for m in out if not m.startswith(("tokenguard.conformance", "tokenguard.client"))]
    assert foreign == []
