"""The health-card vendor libraries' formats: ``iR_DDF1EF05Info``-style strings and return codes.

Hospital front-desk systems are written against vendor libraries that expose one call per file
(``iR_DDF1EF05Info``, ``iR_DDF1EF06Info``, ``iR_DF01…``) and a small set of numeric return codes
(docs/card-reference.md, health card section).  This module produces both from the typed
:class:`~sscard.health.application.HealthCard`, so such a system can switch by changing one call.
The vendor codes are a column of the one error table (:data:`sscard.errors.ERROR_TABLE`), beside
the exit codes, HTTP statuses and national return codes of the same errors.

A front end (layer 5), with the other national formats in :mod:`sscard.national`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sscard.errors import DEFAULT_HEALTH_CODE, ERROR_TABLE, AuthRequired, SscardError, health_code
from sscard.health.application import HealthCard
from sscard.health.layout import Layout, RecordFlaggedInvalid, load_layout

#: The vendor return codes (docs/card-reference.md, health card section), by name.
SUCCESS = 0
PARAMETER_ERROR = 101
NO_FILE = 102
READ_RECORD_FAILED = 103
CARD_ERROR = 104
PSAM_ERROR = 105
AUTHENTICATION_FAILED = 106
RECORD_INVALID = 112

#: sscard error code → vendor return code, from the one error table.  BAD_RECORD is 103 (the
#: record could not be read as what it should be) except for a record the card flags invalid
#: (``FF``), which is 112; that one is told apart by its type
#: (:class:`~sscard.health.layout.RecordFlaggedInvalid`), not its text.
VENDOR_CODES: Mapping[str, int] = {
    code: row.health_code for code, row in ERROR_TABLE.items() if row.health_code is not None
}
#: Reader, service and transport faults have no vendor code of their own: "card error".
DEFAULT_VENDOR_CODE = DEFAULT_HEALTH_CODE


def vendor_code(error: SscardError | None) -> int:
    """The vendor return code for an error (0 for success)."""
    if error is None:
        return SUCCESS
    if isinstance(error, RecordFlaggedInvalid):
        return RECORD_INVALID
    return health_code(error.code)


def _field(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value)


def _values(card: HealthCard, file: str) -> Mapping[str, Any]:
    if file == "EF05":
        card_json: dict[str, Any] = card.to_json()["card"]
        return card_json | {"issue_date": card.issue_date}
    holder = card.cardholder
    if holder is None:
        return {}
    return holder.to_json() | {"birth_date": holder.birth_date}


def file_info(card: HealthCard, file: str, layout: Layout | None = None) -> str:
    """The fields of one file in layout order, each followed by ``|`` (dates ``YYYYMMDD``).

    The order is the layout file's, so a corrected layout corrects the string too; the vendor
    libraries' own field lists are not public, which makes this order unconfirmed.
    """
    layout = layout if layout is not None else load_layout()
    values = _values(card, file)
    return "".join(f"{_field(values.get(element.key))}|" for element in layout.of_file(file))


def ddf1ef05_info(card: HealthCard, layout: Layout | None = None) -> str:
    """``iR_DDF1EF05Info``: 卡的类别|规范版本|发卡机构名称|发卡日期|卡号|应用城市代码| (bundled layout)."""
    return file_info(card, "EF05", layout)


def ddf1ef06_info(card: HealthCard, layout: Layout | None = None) -> str:
    """``iR_DDF1EF06Info``: 姓名|性别|民族|出生日期| (bundled layout); empty fields when EF06 was not read."""
    return file_info(card, "EF06", layout)


def field_names(file: str, layout: Layout | None = None) -> tuple[str, ...]:
    """The Chinese names of a file's fields, in output order (for documentation and parsing)."""
    layout = layout if layout is not None else load_layout()
    return tuple(element.name_zh for element in layout.of_file(file))


def call(operation: Callable[[], str]) -> tuple[int, str]:
    """Run one operation the way the vendor libraries report it: ``(return code, output string)``.

    ``0`` and the output on success; the vendor code of the error and its Chinese message otherwise.
    """
    try:
        return SUCCESS, operation()
    except SscardError as exc:
        return vendor_code(exc), exc.message_zh


def iR_DDF1EF05Info(read: Callable[[], HealthCard]) -> tuple[int, str]:
    """Read (``read`` is the caller's whole health-card read, in its transaction) and format EF05."""
    return call(lambda: ddf1ef05_info(read()))


def iR_DDF1EF06Info(read: Callable[[], HealthCard]) -> tuple[int, str]:
    """Read and format EF06.  A read that could not unlock EF06 is AUTH_REQUIRED → 105 here.

    Unlike the read itself, which succeeds without EF06, this call exists only to return EF06.
    """

    def operation() -> str:
        card = read()
        if card.cardholder is None:
            raise AuthRequired("EF06", "the cardholder data was not unlocked")
        return ddf1ef06_info(card)

    return call(operation)
