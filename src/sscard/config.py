"""Configuration: a TOML file, then environment variables, then command-line options.

Search path (the first file that exists wins; ``SSCARD_CONFIG`` names one explicitly and must exist):

1. ``$SSCARD_CONFIG``
2. ``./sscard.toml``
3. ``$XDG_CONFIG_HOME/sscard/config.toml`` (default ``~/.config/sscard/config.toml``)
4. ``/etc/sscard/config.toml``

Example::

    [reader]
    name = "ACS ACR39U"     # substring of the PC/SC reader name, or "sim:typical", "replay:PATH"
    busy_wait = 2.0         # seconds to wait for a reader another program holds exclusively

    [terminal]
    id = "410100813475"     # 终端机编号, reported in iReadCardBas (reference §6)
    device_id = "MT170701000006"   # 终端设备号

Environment overrides: ``SSCARD_READER``, ``SSCARD_BUSY_WAIT``, ``SSCARD_TERMINAL_ID``,
``SSCARD_DEVICE_ID``.  No PIN is ever read from configuration or the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sscard.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Config:
    reader: str | None = None
    busy_wait: float = 0.0
    terminal_id: str = ""
    device_id: str = ""
    source: str | None = None

    def with_overrides(self, **values: Any) -> Config:
        """Apply command-line values; ``None`` means "not given" and keeps the current value."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def search_path(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path("sscard.toml"), xdg / "sscard" / "config.toml", Path("/etc/sscard/config.toml")]


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the first configuration file found, then apply environment overrides."""
    env = os.environ if env is None else env
    explicit = path or env.get("SSCARD_CONFIG")
    data: dict[str, Any] = {}
    source = None
    if explicit:
        candidate = Path(explicit)
        if not candidate.is_file():
            raise ConfigError(f"configuration file {candidate} does not exist")
        data, source = _read(candidate), str(candidate)
    else:
        for candidate in search_path(env):
            if candidate.is_file():
                data, source = _read(candidate), str(candidate)
                break
    reader = data.get("reader", {})
    terminal = data.get("terminal", {})
    try:
        config = Config(
            reader=_opt_str(reader.get("name")),
            busy_wait=float(reader.get("busy_wait", 0.0)),
            terminal_id=str(terminal.get("id", "")),
            device_id=str(terminal.get("device_id", "")),
            source=source,
        )
        return config.with_overrides(
            reader=env.get("SSCARD_READER") or None,
            busy_wait=float(env["SSCARD_BUSY_WAIT"]) if env.get("SSCARD_BUSY_WAIT") else None,
            terminal_id=env.get("SSCARD_TERMINAL_ID"),
            device_id=env.get("SSCARD_DEVICE_ID"),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"invalid value in {source or 'environment'}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return data


def _opt_str(value: object) -> str | None:
    return None if value in (None, "") else str(value)
