"""Compatibility with the national reader interface (人社部 读写卡通用接口, docs/card-reference.md §6).

Front-desk systems written against the vendor DLLs expect ``iReadCardBas`` output strings and
numeric return codes.  This module produces both from our typed results, so such a system can
switch to sscard by changing one call.  The national return codes are a column of the one error
table (:data:`sscard.errors.ERROR_TABLE`), because vendors reproduce the national codes slightly
differently and the CLI and the service read the same table for their numbers.

A front end (layer 5): the national formats of the card applications are here together — this
module for the SSC's ``iReadCardBas``, :mod:`sscard.national.bank` for ``iReadBankNumber``,
:mod:`sscard.national.health` for the health-card libraries' calls — and nothing below the front
ends imports them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from sscard.apdu.atr import historical_bytes
from sscard.errors import DEFAULT_NATIONAL_CODE, ERROR_TABLE, SscardError, national_code
from sscard.terminal import CardRead, Terminal

#: iReadCardBas field order (docs/card-reference.md §6), for documentation and parsing.
IREADCARDBAS_FIELDS = (
    "区号",
    "社会保障号码",
    "卡号",
    "卡识别码",
    "姓名",
    "卡复位信息",
    "规范版本",
    "发卡日期",
    "卡有效期",
    "终端机编号",
    "终端设备号",
)

#: Our stable error codes → national return codes (docs/card-reference.md §6), from the one error table.
#: CARD_ERROR is −(SW as decimal), computed by :func:`return_code`.
RETURN_CODES: Mapping[str, int] = {
    code: row.national_code for code, row in ERROR_TABLE.items() if row.national_code is not None
}
#: For anything unmapped (configuration and trace errors are ours, not the card's).
DEFAULT_RETURN_CODE = DEFAULT_NATIONAL_CODE


def return_code(error: SscardError | None) -> int:
    """The national numeric return code for an error (0 for success)."""
    return national_code(error)


def _yyyymmdd(value: dt.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def ireadcardbas(card: CardRead, terminal_id: str = "", device_id: str = "") -> str:
    """The iReadCardBas output string: 11 fields, each followed by ``|`` (docs/card-reference.md §6)."""
    issuer, holder = card.issuer, card.cardholder
    fields = (
        issuer.region_code or "",
        holder.ssn or "",
        issuer.card_number or "",
        issuer.identification_code.hex if issuer.identification_code else "",
        holder.full_name or "",
        historical_bytes(card.atr).hex().upper(),
        issuer.spec_version or "",
        _yyyymmdd(issuer.issue_date),
        _yyyymmdd(issuer.expiry_date),
        terminal_id,
        device_id,
    )
    return "".join(f"{value}|" for value in fields)


def parse_ireadcardbas(text: str) -> dict[str, str]:
    """Split an iReadCardBas string back into named fields (for tests and for migrating systems)."""
    parts = text.split("|")
    if len(parts) != len(IREADCARDBAS_FIELDS) + 1 or parts[-1] != "":
        raise ValueError(f"expected {len(IREADCARDBAS_FIELDS)} fields each ending in '|'")
    return dict(zip(IREADCARDBAS_FIELDS, parts[:-1], strict=True))


#: HSM step-1 field order (docs/card-reference.md §6); produced by :meth:`sscard.psam.hsm.HsmStep1.line`.
HSM_STEP1_FIELDS = (
    "区号",
    "ATR",
    "算法标识",
    "卡识别码",
    "内认证过程因子",
    "内认证原始数据",
    "外认证过程因子",
    "外认证原始数据",
    "终端号",
)


def call(operation: Callable[[], str]) -> tuple[int, str]:
    """Run one operation the way the vendor DLLs report it: ``(return code, output string)``.

    ``0`` and the output on success; the national code of the error and its Chinese message
    otherwise, so a front-desk system that branches on the numbers keeps working unchanged.
    """
    try:
        return 0, operation()
    except SscardError as exc:
        return return_code(exc), exc.message_zh


def iReadCardBas(terminal: Terminal, device_id: str = "") -> tuple[int, str]:
    """``iReadCardBas``: read and format (docs/card-reference.md §6); a 3rd-generation card needs ``[keys]``."""
    return call(
        lambda: ireadcardbas(terminal.read("ssc"), terminal.config.terminal_id, device_id or terminal.config.device_id)
    )


def iReadCardBas_HSM_Step1(terminal: Terminal) -> tuple[int, str]:
    """Step 1 of the HSM variant: the line for the HSM (layout :data:`HSM_STEP1_FIELDS`)."""
    return call(lambda: terminal.hsm_step1().line())


def iReadCardBas_HSM_Step2(terminal: Terminal, step1: str, hsm_answer: str, device_id: str = "") -> tuple[int, str]:
    """Step 2: the HSM's ``内认证结果|外认证密文|`` in, the iReadCardBas string out."""
    return call(
        lambda: ireadcardbas(
            terminal.hsm_step2(step1, hsm_answer), terminal.config.terminal_id, device_id or terminal.config.device_id
        )
    )
