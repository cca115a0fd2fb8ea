"""``python -m tokenguard``: the same as the ``tokenguard`` command."""

import sys

from tokenguard.cli import main

sys.exit(main())
