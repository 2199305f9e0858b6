"""Code tables for labelling data elements (docs/card-reference.md §3), loaded from ``data/codes.toml``.

The tables are data so that a deployment can correct or extend a label without touching code.
"""

from __future__ import annotations

import functools
import os

from sscard import _toml as tomllib


@functools.cache
def _tables() -> dict[str, dict[str, str]]:
    # The file next to this module: importlib.resources would cost more to import than the
    # whole table to parse (start-up, issue 11 item 14); a zipped install still takes that path.
    path = os.path.join(os.path.dirname(__file__), "data", "codes.toml")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
    else:  # pragma: no cover - sscard imported from a zip file
        from importlib import resources

        text = resources.files("sscard.ssc").joinpath("data/codes.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    return {name: {str(k): str(v) for k, v in table.items()} for name, table in raw.items()}


def gender_label(code: str | None) -> str | None:
    """GB/T 2261.1 label for a tag 0A code, ``None`` for an unknown code."""
    return _tables()["gender"].get(code) if code is not None else None


def nation_label(code: str | None) -> str | None:
    """GB/T 3304 label for a tag 0B code such as ``"01"``."""
    return _tables()["nation"].get(code) if code is not None else None


def province_label(region_code: str | None) -> str | None:
    """Province-level name of a 6-digit region code (行政区划), from its first two digits."""
    if not region_code or len(region_code) < 2:
        return None
    return _tables()["province"].get(region_code[:2])
