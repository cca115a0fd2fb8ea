"""Root of the test tree: makes :mod:`support` importable from every test package."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
