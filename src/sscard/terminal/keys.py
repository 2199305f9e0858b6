"""Key-service wiring of the terminal: the configured ``[keys] service`` opened for card authentication.

The terminal's reads and the HSM steps ask it; it knows nothing of connections or sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sscard.apdu.processors import TraceSink
from sscard.config import Config
from sscard.errors import (
    AuthRequired,
    NoCard,
    PsamMissing,
    UsageError,
)

if TYPE_CHECKING:
    from sscard.psam.keys import KeyService


def open_key_service(config: Config, trace_sink: TraceSink | None = None) -> KeyService:
    """The configured key service (``[keys] service``); the PSAM is connected now."""
    from sscard.psam.keys import PsamKeyService, SoftwareKeyService
    from sscard.psam.profile import load_profile

    if config.key_service == "software":
        from sscard.readers import published_test_keys_path

        path = config.key_file or str(published_test_keys_path())
        return SoftwareKeyService.from_file(path, config.keyset, allowed=config.allow_software_keys)
    if config.key_service == "psam":
        from sscard.readers import open_sam_reader

        reader = open_sam_reader(config)
        try:
            transport = reader.connect()
        except NoCard:
            raise PsamMissing(f"the SAM slot {reader.name!r} is empty") from None
        return PsamKeyService(transport, load_profile(config.key_profile), trace_sink)
    if config.key_service == "hsm":
        raise UsageError(
            'with [keys] service = "hsm" use the two-step calls (hsm_step1 / hsm_step2)',
            "加密机模式请使用两步调用（hsm_step1/hsm_step2）",
        )
    raise AuthRequired(
        "card authentication",
        "no key service configured ([keys] service = psam, or hsm with the two-step calls)",
        element_zh="卡片认证数据",
    )
