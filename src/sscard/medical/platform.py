"""The platform's codes and request layout, read from ``medical/data/platform.toml`` (data, so
that what is unconfirmed is in one file with its source: docs/medical.md)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

from sscard.errors import ConfigError

_REQUIRED = {
    "mdtrt_cert_type": ("e_voucher", "id_number", "ssc"),
    "psn_cert_type": ("resident_id",),
    "ec_query": ("trans_type", "business_type", "code_field"),
}


@functools.lru_cache(maxsize=1)
def platform_data() -> Mapping[str, Any]:
    """The bundled file, checked once: every value this package reads is a non-empty string."""
    from sscard import _toml as tomllib

    text = resources.files("sscard.medical").joinpath("data/platform.toml").read_text(encoding="utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    for table, keys in _REQUIRED.items():
        for key in keys:
            value = data.get(table, {}).get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"sscard/medical/data/platform.toml: [{table}] {key} must be a non-empty string")
    return data
