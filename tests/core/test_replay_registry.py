"""The replay-store registry knows every store, whichever store module a process imported first."""

from __future__ import annotations

import subprocess
import sys


def test_importing_one_store_first_does_not_hide_the_others() -> None:
    # A fresh interpreter: in this one every store module is loaded already.
    code = ("import tokenguard.core.replay.memory\n"
            "from tokenguard.core.replay import store_problem\n"
            "print([store_problem(s) for s in ('embedded', 'redis+cluster://h:1', 'redis://h:1/0', 'memory')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[None, None, None, None]", out.stdout
