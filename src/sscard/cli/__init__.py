"""``sscard``: the command-line front end (docs/cli.md), a package split by command family.

PINs come from a hidden prompt or ``--pin-stdin``, never from an argument, so they never appear in
``ps`` output or shell history.  Exit codes are stable; they are the CLI's column of the one error
table (:data:`sscard.errors.ERROR_TABLE`) and are listed in docs/cli.md and ``sscard --help``.

The modules, each importing only those above it in this list (no circle):

* :mod:`.pin` — reading PINs; :mod:`.util` — :class:`~sscard.cli.util.Context`, output, tables
  by display width, exit codes, error reports; :mod:`.options` — option groups and the builder;
* the command families, each with its commands and its ``build`` (its options):
  :mod:`.read` (``read``, its argparse-free fast path, the readable card), :mod:`.cards`
  (``readers``, ``auth-check``, ``sign-in``, ``verify``, ``pin-status``, ``change-pin``, ``demo``),
  :mod:`.sim`, :mod:`.serial` (``scan``, ``idcard``, ``watch``), :mod:`.service` (``serve``,
  ``install-rules``), :mod:`.traces` (``record``, ``replay``), :mod:`.tokens`, :mod:`.config`,
  :mod:`.completion`, :mod:`.doctor` (its checks imported only when it runs);
* :mod:`.parser` — which family builds which command; only the given command's is imported;
* :mod:`.entry` — :func:`main` and :func:`run`.

A plain ``sscard read`` imports util, read and entry, nothing of the other families
(tests/test_cli_startup.py).
"""

from __future__ import annotations

from sscard.cli.entry import main, run

__all__ = ["main", "run"]
