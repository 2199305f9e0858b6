"""libHeaSecReadInfo.so's own socket operations: ``ReadSFZ`` and ``GetPersonInfo`` (docs/native.md).

The medical insurance platform's reader library (docs/card-reference.md §7) has three calls the
national interface already answers (its ``ReadCardBas``, ``VerifyPIN`` and ``ChangePIN`` are sent
as ``iReadCardBas``, ``iVerifyPIN``, ``iChangePIN``) and two of its own, answered here:

* ``ReadSFZ [PHOTO]``: the resident ID card on the service's ``[idcard] port`` (one attempt, no
  waiting: no card is −2), answered as three parts — the ``pOutBuff`` line, the business string
  (empty: it needs the platform's keys) and the raw WLT photo when ``PHOTO`` is ``1``.  The
  library writes the photo in the calling process, to the path that process named.
* ``GetPersonInfo SETTINGS``: whichever credential comes first, through
  :func:`sscard.medical.medical_credential`, answered as the JSON object of
  ``MedicalCredential.fields()``.  ``SETTINGS`` is the JSON the library forwards from its
  ``Init`` (``EC_URL``, ``TIMEOUT``, ``ORG_ID``, ``CARD_PASSTYPE``, ``AREA_CODE``).  An e-voucher
  is resolved through ``EC_URL`` only when the service allows that address (``[medical]
  ec_url``): a local client cannot make the service send a resident's code anywhere else.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sscard.errors import ConfigError, ParameterError
from sscard.native_socket.protocol import Answer, BadCall

if TYPE_CHECKING:
    from sscard.idcard import IdCardRecord
    from sscard.medical import HttpEcResolver
    from sscard.terminal import Terminal

#: ``pOutBuff``'s fields in order (docs/card-reference.md §7; the order is one integrator's, unconfirmed).
SFZ_FIELDS = ("姓名", "性别", "民族", "出生日期", "住址", "公民身份号码", "签发日期", "有效期至", "签发机关")
#: ``有效期至`` of a card valid for life, as the card itself says.
LONG_TERM_TEXT = "长期"
#: The wait for one exchange with the ID-card reader (s), as ``sscard idcard read``'s default.
IDCARD_TIMEOUT = 3.0


class EcUrlNotAllowed(ParameterError):
    """GetPersonInfo with an ``EC_URL`` the service was not configured to call (−14): a client of
    the socket may not point the service at an address of its choosing."""

    message_en = "Invalid parameter: the service does not call this EC_URL (set [medical] ec_url)."
    message_zh_text = "参数错误：读卡服务未允许此电子凭证地址。"


def _yyyymmdd(value: dt.date) -> str:
    return value.strftime("%Y%m%d")


def sfz_line(record: IdCardRecord) -> str:
    """The ``pOutBuff`` line: nine fields, each followed by ``|``; dates ``YYYYMMDD``.

    性别 and 民族 are the labels of the codes on the card (男, 汉族), the code itself when the table
    does not know it; 签发日期 is the start of the validity period (the card holds no other date
    of issue); 有效期至 is ``长期`` for a card valid for life.
    """
    valid_to = record.valid_to
    values = (
        record.name,
        record.gender or record.gender_code,
        record.nation or record.nation_code,
        _yyyymmdd(record.birth_date),
        record.address,
        record.id_number,
        _yyyymmdd(record.valid_from),
        LONG_TERM_TEXT if isinstance(valid_to, str) else _yyyymmdd(valid_to),
        record.issuer,
    )
    return "".join(f"{value}|" for value in values)


def photo_wanted(args: tuple[str, ...]) -> bool:
    if len(args) != 1 or args[0] not in ("0", "1"):
        raise BadCall("ReadSFZ takes one argument, 0 or 1")
    return args[0] == "1"


def read_sfz(terminal: Terminal, *, photo: bool) -> Answer:
    """One read of the ID card on ``[idcard] port``: (0, (line, "", photo or b"")).

    No card is ID_CARD_NO_CARD (−2) at once; the port missing or unplugged −11; a reader that does
    not answer, a damaged frame, a failed select or read −12 (docs/native.md).
    """
    from sscard.idcard import IdCardReader
    from sscard.transports.serial import SerialPort

    path = terminal.config.idcard_port
    if not path:
        raise ConfigError(
            "[idcard] port is not set: the service has no ID-card reader for ReadSFZ",
            problem_zh="读卡服务未配置身份证阅读器",
        )
    from sscard.credentials import claim_port

    with claim_port(path), SerialPort(path, terminal.config.idcard_baudrate) as port:  # the follower lets go
        record = IdCardReader(port, timeout=IDCARD_TIMEOUT).read_card()
    return 0, (sfz_line(record), "", record.photo_wlt if photo else b"")


@dataclass(frozen=True)
class MedicalSettings:
    """What the library forwards from its ``Init`` with each GetPersonInfo."""

    ec_url: str
    timeout: float
    org_id: str
    card_passtype: str
    area_code: str

    @classmethod
    def from_args(cls, args: tuple[str, ...]) -> MedicalSettings:
        if len(args) != 1:
            raise BadCall("GetPersonInfo takes one argument, the settings")
        try:
            data: Any = json.loads(args[0])
        except ValueError:
            raise BadCall("GetPersonInfo: the settings are not JSON") from None
        if not isinstance(data, dict):
            raise BadCall("GetPersonInfo: the settings are not an object")
        timeout = data.get("TIMEOUT")
        texts = [data.get(key) for key in ("EC_URL", "ORG_ID", "CARD_PASSTYPE", "AREA_CODE")]
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not 0 < timeout <= 600
            or not all(isinstance(t, str) for t in texts)
        ):
            raise BadCall("GetPersonInfo: bad settings")
        ec_url, org_id, card_passtype, area_code = (str(t) for t in texts)
        return cls(ec_url, float(timeout), org_id, card_passtype, area_code)


def resolver_for(terminal: Terminal, settings: MedicalSettings) -> HttpEcResolver | None:
    """The e-voucher resolver of a GetPersonInfo: None for an empty ``EC_URL`` (the code stays
    unresolved), EcUrlNotAllowed for an address other than the service's ``[medical] ec_url``.

    Init's ``TIMEOUT`` and ``ORG_ID`` (else ``[medical] org_id``) go into the request; the rest
    of ``ec.query`` (business type, operator, office, device) is the service's ``[medical]``.
    """
    from sscard.medical.ec import resolver_from_config

    if not settings.ec_url:
        return None
    config = terminal.config
    if settings.ec_url != config.medical_ec_url:
        raise EcUrlNotAllowed()
    return resolver_from_config(config, timeout=settings.timeout, org_id=settings.org_id or config.medical_org_id)


def person_info(
    terminal: Terminal,
    settings: MedicalSettings,
    *,
    verify_pin: Callable[[Terminal], None] | None,
) -> Answer:
    """Wait for any credential (``TIMEOUT`` s) and answer its platform fields as a JSON object.

    ``CARD_PASSTYPE`` ``"1"``: an SSC's PIN is checked through ``verify_pin`` (the service's PIN
    source) before the fields are answered; ``"2"`` (the HIS checks a password of its own): not.
    """
    from sscard.medical import medical_credential

    resolver = resolver_for(terminal, settings)
    credential = medical_credential(
        terminal,
        settings.timeout,
        resolver=resolver,
        verify_pin=verify_pin if settings.card_passtype == "1" else None,
    )
    return 0, json.dumps(credential.fields(), ensure_ascii=False)


__all__ = [
    "IDCARD_TIMEOUT",
    "LONG_TERM_TEXT",
    "SFZ_FIELDS",
    "EcUrlNotAllowed",
    "MedicalSettings",
    "person_info",
    "photo_wanted",
    "read_sfz",
    "resolver_for",
    "sfz_line",
]
