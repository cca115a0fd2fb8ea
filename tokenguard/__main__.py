"""``python -m tokenguard``: the same as the ``tokenguard`` command."""

import sys

from .cli import main

sys.exit(main())
