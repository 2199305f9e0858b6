"""The TOML parser, one import for every module that reads a data or configuration file.

The standard library's ``tomllib`` from Python 3.11, its backport ``tomli`` on 3.10 (a dependency
there only).  Modules import this where they parse, so the parser loads only when a file is read.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from tomllib import TOMLDecodeError, loads
else:  # pragma: no cover - exercised on 3.10 only
    from tomli import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]
