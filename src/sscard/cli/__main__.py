"""``python -m sscard.cli``: the same command line as the ``sscard`` script (docs/cli.md)."""

from sscard.cli.entry import run

run()
