"""``python -m sscard``: the same command line as the ``sscard`` script (docs/cli.md)."""

import sys

from sscard.cli import main

sys.exit(main())
