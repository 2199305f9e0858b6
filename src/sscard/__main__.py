"""``python -m sscard``: the same command line as the ``sscard`` script (docs/cli.md)."""

from sscard.cli import run

run()
