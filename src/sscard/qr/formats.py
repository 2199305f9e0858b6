"""What a scanned QR code is: the kinds, and the site-adjustable rules (``qr_formats.toml``) that
classify a code without resolving it.

Part of :mod:`sscard.qr`, which re-exports every public name; no I/O but reading the rules file.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sscard.errors import ConfigError

if TYPE_CHECKING:
    pass

from sscard import _toml as tomllib


class QrKind(str, enum.Enum):
    """What a scanned code is; the values are the stable ``kind`` of ``sscard scan --json``."""

    MEDICAL_INSURANCE_EVOUCHER = "medical_insurance_evoucher"
    ELECTRONIC_SSC = "electronic_ssc"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class QrFormat:
    """One kind's rule from the formats file: whole-code patterns, and where the rule comes from."""

    kind: QrKind
    patterns: tuple[re.Pattern[str], ...]
    name_zh: str = ""
    confidence: str = ""
    source: str = ""
    example: str | None = None

    def matches(self, code: str) -> bool:
        return any(pattern.fullmatch(code) for pattern in self.patterns)


@dataclass(frozen=True)
class QrFormats:
    """The classification rules, in file order: the first kind with a matching pattern wins."""

    formats: tuple[QrFormat, ...]
    source: str = ""

    def classify(self, code: str) -> QrKind:
        for fmt in self.formats:
            if fmt.matches(code):
                return fmt.kind
        return QrKind.UNKNOWN

    def get(self, kind: QrKind) -> QrFormat | None:
        return next((fmt for fmt in self.formats if fmt.kind is kind), None)


def _parse_formats(text: str, source: str) -> QrFormats:
    try:
        data = tomllib.loads(text)
        if data.get("schema", 1) != 1:
            raise ValueError(f"unsupported schema {data.get('schema')!r}")
        kinds: dict[str, Any] = data["kinds"]
        formats: list[QrFormat] = []
        for name, table in kinds.items():
            kind = QrKind(name)
            if kind is QrKind.UNKNOWN:
                raise ValueError("'unknown' is the fallback and takes no patterns")
            patterns = tuple(re.compile(str(p), re.ASCII) for p in table["patterns"])
            if not patterns:
                raise ValueError(f"kinds.{name}.patterns is empty")
            example = table.get("example")
            fmt = QrFormat(
                kind=kind,
                patterns=patterns,
                name_zh=str(table.get("name_zh", "")),
                confidence=str(table.get("confidence", "")),
                source=str(table.get("source", "")),
                example=None if example is None else str(example),
            )
            if fmt.example is not None and not fmt.matches(fmt.example):
                raise ValueError(f"kinds.{name}.example does not match its own patterns")
            formats.append(fmt)
        return QrFormats(tuple(formats), source)
    except (KeyError, TypeError, ValueError, re.error, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"QR formats {source}: {exc}") from None


def load_formats(path: str | Path | None = None) -> QrFormats:
    """The bundled rules (``sscard/qr_formats.toml``), or a site's own file; ConfigError when invalid."""
    if path is None:
        return _bundled_formats()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read QR formats {path}: {exc}") from None
    return _parse_formats(text, str(path))


@functools.lru_cache(maxsize=1)
def _bundled_formats() -> QrFormats:
    entry = resources.files("sscard").joinpath("qr_formats.toml")
    return _parse_formats(entry.read_text(encoding="utf-8"), "sscard/qr_formats.toml")


def classify(code: str, formats: QrFormats | None = None) -> QrKind:
    """The kind of ``code`` by the bundled rules (or ``formats``); never resolves the code."""
    return (formats or _bundled_formats()).classify(code)
