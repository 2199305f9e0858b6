"""The resident health card (居民健康卡): a card application beside the social security card's.

Layer 3 (docs/architecture.md).  :mod:`.layout` is the data-driven record layout
(``data/layout.toml``), :mod:`.application` the DDF1 read with its typed :class:`HealthCard`,
:mod:`.national` the vendor libraries' strings and return codes.  docs/health-card.md says what is
read and what is unconfirmed.
"""

from sscard.errors import RecordFlaggedInvalid
from sscard.health.application import HealthApplication, HealthCard, HealthCardholder, read_health_card
from sscard.health.layout import Layout, load_layout, parse_record

__all__ = [
    "HealthApplication",
    "HealthCard",
    "HealthCardholder",
    "Layout",
    "RecordFlaggedInvalid",
    "load_layout",
    "parse_record",
    "read_health_card",
]
