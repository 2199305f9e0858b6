"""One error hierarchy for every layer, with stable codes and bilingual messages.

Kiosk software branches on ``code`` (a stable string, never renamed once released) and shows
``message_zh`` / ``message`` to the person at the terminal.  The set mirrors Web eID's retriable
errors (docs/design.md §10) plus what this card adds (docs/card-reference.md §4, §6).

This module sits below every other one: transports, the APDU layer and the card application all
raise these, so nothing above has to translate a pyscard or socket exception.

No error may carry a PIN.  Constructors take only the fields listed on each class, and none of
them is a PIN; messages are built from those fields alone.

The module is over 400 lines because it is the whole hierarchy — one short class per stable code —
and the one table of what each front end answers each code with (:data:`ERROR_TABLE`); kept in one
file, a new code and its row are reviewed together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


class SscardError(Exception):
    """Base of every error sscard raises on purpose.

    ``detail`` is free English text for logs (never a PIN); ``fields`` are machine-readable extras
    that also appear in :meth:`to_dict`.
    """

    code: ClassVar[str] = "ERROR"
    message_en: ClassVar[str] = "Unexpected error."
    message_zh_text: ClassVar[str] = "发生未预期的错误。"
    #: Whether trying again (after the person acts) can succeed; a kiosk UI uses it to pick a prompt.
    retriable: ClassVar[bool] = False
    #: Fields that hold free English text (a problem, a reason …): the Chinese message never shows
    #: them, so that it stays wholly Chinese.  A caller may give a field's Chinese counterpart as
    #: ``<field>_zh`` (used by :attr:`message_zh` only, not part of :meth:`to_dict`); without one
    #: the fallback here stands in, and the English message keeps the detail.
    zh_fallbacks: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, **fields: Any) -> None:
        self.detail = detail
        self.fields_zh: dict[str, str] = {}
        for name in self.zh_fallbacks:
            given = fields.pop(f"{name}_zh", None)
            if given:
                self.fields_zh[name] = given
        self.fields = fields
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.message_en.format(**self.fields)
        return f"{text} ({self.detail})" if self.detail else text

    @property
    def message_zh(self) -> str:
        values = {**self.fields, **self.zh_fallbacks, **self.fields_zh}
        return self.message_zh_text.format(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON error form shared by the CLI and the service: ``{"code", "message", "message_zh", ...}``."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "message_zh": self.message_zh}
        out.update({k: v for k, v in self.fields.items() if v is not None})
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message} / {self.message_zh}"

    @property
    def row(self) -> ErrorRow:
        """This error's row of :data:`ERROR_TABLE`: its exit code, HTTP status, national codes."""
        return row_of(self.code)


# --- the one error table: exit code, HTTP status, national and health-card return codes -------
#
# Each front end answers an error with a number of its own: the CLI an exit status, the service an
# HTTP status, the national interface (sscard.national) a return code of the vendor DLLs, the
# health-card libraries (sscard.national.health) theirs.  They are all read from this one table,
# keyed by the stable ``code``, so no front end maps codes by string on its own.  Rows exist also
# for codes whose classes live elsewhere (the session tokens' TOKEN_*, the service's refusals).


@dataclass(frozen=True)
class Category:
    """A kind of failure, which decides the CLI's exit status (docs/cli.md, "Exit codes").

    ``exit_code`` None: the CLI never raises it (the service's own refusals); it would be 1.
    ``summary``: the English / Chinese name ``sscard --help`` lists the codes under (empty: none).
    """

    name: str
    exit_code: int | None
    summary: str = ""


INTERNAL = Category("internal", 1, "internal error (a bug; rerun with -vv) / 内部错误")
USAGE = Category("usage", 2, "usage error / 用法错误")
ENVIRONMENT = Category("environment", 3, "environment / 环境")
CARD = Category("card", 4, "card / 卡片")
PIN = Category("pin", 5, "PIN / 密码")
PIN_LOCKED = Category("pin-blocked", 6)
LOCAL = Category("local", 7, "configuration / 配置")
KEY_SERVICE = Category("key-service", 8, "key service / 密钥服务")
TOKEN = Category("token", 9, "token rejected / 令牌被拒绝")
TOKEN_OLD = Category("token-expired", 10)
SERIAL = Category("serial", 11, "serial devices / 串口设备")
PLATFORM = Category("platform", 12, "medical insurance platform / 医保平台")
REQUEST = Category("request", None, "the service's refusals of a request (HTTP only)")

#: Every category, in exit-code order.
CATEGORIES = (
    INTERNAL,
    USAGE,
    ENVIRONMENT,
    CARD,
    PIN,
    PIN_LOCKED,
    LOCAL,
    KEY_SERVICE,
    TOKEN,
    TOKEN_OLD,
    SERIAL,
    PLATFORM,
    REQUEST,
)

#: The HTTP status of a code whose row names none: the card or the session said no.
DEFAULT_HTTP_STATUS = 409
#: The national return code of a code whose row names none (configuration, traces: ours, not the card's).
DEFAULT_NATIONAL_CODE = -13
#: The health-card libraries' code of a code whose row names none: reader, service and transport
#: faults have no vendor code of their own, so "card error" (104).
DEFAULT_HEALTH_CODE = 104


@dataclass(frozen=True)
class ErrorRow:
    """What every front end answers one error code with.  None: that front end's default."""

    category: Category
    http_status: int | None = None
    national_code: int | None = None
    health_code: int | None = None

    @property
    def exit_code(self) -> int:
        return self.category.exit_code if self.category.exit_code is not None else INTERNAL.exit_code or 1


_R = ErrorRow
#: code → row.  National codes: docs/card-reference.md §6 (CARD_ERROR is −(SW as decimal), see national_code);
#: health-card codes: docs/card-reference.md, health card section (101 parameter, 102 no file,
#: 103 read failed, 104 card error, 105 PSAM, 106 authentication; 112, a record flagged invalid,
#: is told apart by its type in sscard.national.health).
ERROR_TABLE: Mapping[str, ErrorRow] = {
    "ERROR": _R(INTERNAL),
    "INTERNAL": _R(INTERNAL, http_status=500),
    # usage
    "USAGE_ERROR": _R(USAGE, http_status=400, health_code=101),
    "NOT_SIGNED_IN": _R(USAGE),
    "SESSION_ACTIVE": _R(USAGE),
    "REPLAY_PIN_REFUSED": _R(USAGE),
    # environment: service, reader, card presence, transport
    "NO_SERVICE": _R(ENVIRONMENT, http_status=503, national_code=-11),
    "NO_READER": _R(ENVIRONMENT, http_status=503, national_code=-11),
    "NO_CARD": _R(ENVIRONMENT, http_status=409, national_code=-2, health_code=104),
    "CARD_REMOVED": _R(ENVIRONMENT, http_status=409, national_code=-2, health_code=104),
    "CARD_RESET": _R(ENVIRONMENT, national_code=-3, health_code=104),
    "CARD_CHANGED": _R(ENVIRONMENT, national_code=-20, health_code=104),
    "READER_BUSY": _R(ENVIRONMENT, national_code=-11),
    "CARD_MUTE": _R(ENVIRONMENT, national_code=-4, health_code=104),
    "TRANSPORT_ERROR": _R(ENVIRONMENT, http_status=503, national_code=-12),
    "TIMEOUT": _R(ENVIRONMENT, http_status=504, national_code=-12),
    # the card
    "NOT_SSC": _R(CARD, national_code=-1, health_code=102),
    "BAD_RECORD": _R(CARD, national_code=-23, health_code=103),
    "CARD_ERROR": _R(CARD, health_code=104),
    "CARD_LOCKED": _R(CARD, national_code=-0x9303, health_code=104),
    "AUTH_REQUIRED": _R(CARD, national_code=-2203, health_code=105),
    "CARD_NOT_GENUINE": _R(CARD, national_code=-21, health_code=106),
    "TERMINAL_AUTH_FAILED": _R(CARD, national_code=-22, health_code=106),
    # the PIN
    "PIN_INCORRECT": _R(PIN, national_code=-51),
    "PIN_FORMAT": _R(PIN, http_status=400, national_code=-33, health_code=101),
    "PIN_MISMATCH": _R(PIN, national_code=-34),
    "PIN_BLOCKED": _R(PIN_LOCKED, national_code=-52),
    "PIN_ENTRY_CANCELLED": _R(PIN, national_code=-31),
    "PIN_ENTRY_TIMEOUT": _R(PIN, national_code=-32),
    "PARAMETER_ERROR": _R(USAGE, http_status=400, national_code=-14, health_code=101),
    # local files: configuration, traces, keys
    "CONFIG_ERROR": _R(LOCAL, http_status=500, health_code=101),
    "TRACE_MISMATCH": _R(LOCAL),
    "TOKEN_KEY_ERROR": _R(LOCAL),
    "TRACE_INVALID": _R(LOCAL),
    "FILE_REFUSED": _R(LOCAL),
    # the key service: PSAM, HSM
    "PSAM_MISSING": _R(KEY_SERVICE, national_code=-2201, health_code=105),
    "PSAM_KEY_MISSING": _R(KEY_SERVICE, national_code=-24, health_code=105),
    "PSAM_ERROR": _R(KEY_SERVICE, national_code=-12, health_code=105),
    "ALGORITHM_UNSUPPORTED": _R(KEY_SERVICE, national_code=-2202, health_code=105),
    "HSM_RESPONSE_INVALID": _R(KEY_SERVICE, national_code=-25, health_code=105),
    # session tokens (their classes: sscard.tokens)
    "TOKEN_MALFORMED": _R(TOKEN),
    "TOKEN_INVALID": _R(TOKEN),
    "TOKEN_NOT_YET_VALID": _R(TOKEN),
    "TOKEN_WRONG_TERMINAL": _R(TOKEN),
    "TOKEN_EXPIRED": _R(TOKEN_OLD),
    # serial devices: QR scanners, ID-card readers (national codes: libHeaSecReadInfo's ReadSFZ, docs/native.md)
    "DEVICE_NOT_FOUND": _R(SERIAL, national_code=-11),
    "DEVICE_REMOVED": _R(SERIAL, national_code=-11),
    "DEVICE_TIMEOUT": _R(SERIAL, national_code=-12),
    "FRAME_ERROR": _R(SERIAL, national_code=-12),
    "SCAN_REJECTED": _R(SERIAL),
    "ID_CARD_NO_CARD": _R(SERIAL, national_code=-2),
    "ID_CARD_SELECT_FAILED": _R(SERIAL, national_code=-12),
    "ID_CARD_READ_FAILED": _R(SERIAL, national_code=-12),
    "ID_CARD_ERROR": _R(SERIAL),
    # the medical insurance platform's e-voucher resolution (sscard.medical, docs/medical.md)
    "EC_UNREACHABLE": _R(PLATFORM, http_status=502),
    "EC_REFUSED": _R(PLATFORM),
    "EC_BAD_ANSWER": _R(PLATFORM, http_status=502),
    # the service's own refusals (their classes: sscard.service.problems)
    "SERVICE_ERROR": _R(REQUEST),
    "BAD_REQUEST": _R(REQUEST, http_status=400),
    "UNAUTHORIZED": _R(REQUEST, http_status=401),
    "ORIGIN_REFUSED": _R(REQUEST, http_status=403),
    "NOT_FOUND": _R(REQUEST, http_status=404),
    "METHOD_NOT_ALLOWED": _R(REQUEST, http_status=405),
    "REQUEST_TOO_LARGE": _R(REQUEST, http_status=413),
    "SERVICE_BUSY": _R(REQUEST, http_status=503),
}
del _R

#: The row of a code the table does not know (a bug's code): internal error, every default.
UNLISTED = ErrorRow(INTERNAL)


def row_of(code: str) -> ErrorRow:
    """The table row of an error code (:data:`UNLISTED` for a code the table does not know)."""
    return ERROR_TABLE.get(code, UNLISTED)


def exit_code(code: str) -> int:
    """The CLI's exit status for an error code."""
    return row_of(code).exit_code


def http_status(code: str) -> int:
    """The service's HTTP status for an error code."""
    status = row_of(code).http_status
    return DEFAULT_HTTP_STATUS if status is None else status


def national_code(error: SscardError | None) -> int:
    """The national interface's return code (docs/card-reference.md §6): 0 for success, −SW for CARD_ERROR."""
    if error is None:
        return 0
    if isinstance(error, CardError):
        return -error.sw
    value = row_of(error.code).national_code
    return DEFAULT_NATIONAL_CODE if value is None else value


def health_code(code: str) -> int:
    """The health-card libraries' return code for an error code (not 112: see sscard.national.health)."""
    value = row_of(code).health_code
    return DEFAULT_HEALTH_CODE if value is None else value


# --- PC/SC and reader level -------------------------------------------------------------------


class NoService(SscardError):
    code = "NO_SERVICE"
    message_en = "The smart-card service (pcscd) is not running."
    message_zh_text = "智能卡服务（pcscd）未运行。"
    retriable = True


class NoReader(SscardError):
    code = "NO_READER"
    message_en = "No card reader found."
    message_zh_text = "未找到读卡器。"
    retriable = True


class NoCard(SscardError):
    code = "NO_CARD"
    message_en = "No card in the reader. Please insert your social security card."
    message_zh_text = "读卡器中没有卡，请插入社会保障卡。"
    retriable = True


class CardRemoved(SscardError):
    """The card left mid-operation.  ``pin_sent``: it left after a PIN command went out and before
    its answer came back, so the card may have counted the attempt; a kiosk must say so rather than
    claim nothing happened, and must never resend (read the tries left first)."""

    code = "CARD_REMOVED"
    message_en = "The card was removed during the operation. Please insert it again."
    message_zh_text = "操作过程中卡被拔出，请重新插卡。"
    retriable = True

    def __init__(
        self, detail: str | None = None, *, pin_sent: bool | None = None, command_sent: bool | None = None
    ) -> None:
        super().__init__(detail, pin_sent=pin_sent)
        #: Set by the transport: False when the failing command certainly never left (the card was
        #: known to be gone first), None when it may have reached the card.  Not part of to_dict().
        self.command_sent = command_sent

    @property
    def message(self) -> str:
        text = super().message
        if self.fields.get("pin_sent"):
            text += " The PIN had been sent: the card may have counted the attempt."
        return text

    @property
    def message_zh(self) -> str:
        text = super().message_zh
        if self.fields.get("pin_sent"):
            text += "密码已发送，卡片可能已计入一次尝试。"
        return text


class CardChanged(SscardError):
    code = "CARD_CHANGED"
    message_en = "A different card is now in the reader than the one read before. Please read the card again."
    message_zh_text = "读卡器中已换了另一张卡，请重新读卡。"
    retriable = True


class CardReset(SscardError):
    code = "CARD_RESET"
    message_en = "The card was reset by another program. Please try again."
    message_zh_text = "卡片已被其他程序复位，请重试。"
    retriable = True


class ReaderBusy(SscardError):
    code = "READER_BUSY"
    message_en = (
        "The reader is in use by another program (a vendor tool, a browser plug-in, another kiosk "
        "service). Close that program, or wait and try again; [reader] busy_wait sets how long to wait."
    )
    message_zh_text = (
        "读卡器正被其他程序（厂商工具、浏览器插件或其他服务）占用，请关闭该程序或稍候重试；可在配置中设置等待时间。"
    )
    retriable = True


class CardMute(SscardError):
    code = "CARD_MUTE"
    message_en = "The card does not answer. Re-insert it the right way round."
    message_zh_text = "卡片无响应，请按正确方向重新插卡。"
    retriable = True


class TransportFailure(SscardError):
    code = "TRANSPORT_ERROR"
    message_en = "Communication with the reader failed."
    message_zh_text = "与读卡器通信失败。"
    retriable = True


class AccessDenied(TransportFailure):
    """pcscd refused this process (``SCARD_W_SECURITY_VIOLATION``: polkit said no), told apart from
    other transport failures because its fix is a permission (udev/README.md), not a reader."""

    message_en = "The smart-card service (pcscd) refused this user access (polkit)."
    message_zh_text = "智能卡服务（pcscd）拒绝了当前用户的访问（polkit权限不足）。"
    retriable = False


# --- card application level -------------------------------------------------------------------


class NotSsc(SscardError):
    code = "NOT_SSC"
    message_en = "This card is not a social security card."
    message_zh_text = "此卡不是社会保障卡。"


class PinFormat(SscardError):
    code = "PIN_FORMAT"
    message_en = "The PIN must be 4 to 12 digits."
    message_zh_text = "密码须为4至12位数字。"


class PinIncorrect(SscardError):
    code = "PIN_INCORRECT"
    message_en = "Wrong PIN. {tries_left} tries left."
    message_zh_text = "密码错误，还可尝试{tries_left}次。"

    def __init__(self, tries_left: int, detail: str | None = None) -> None:
        self.tries_left = tries_left
        super().__init__(detail, tries_left=tries_left)


class PinMismatch(SscardError):
    code = "PIN_MISMATCH"
    message_en = "The two new PINs differ."
    message_zh_text = "两次输入的新密码不一致。"


class PinBlocked(SscardError):
    code = "PIN_BLOCKED"
    message_en = "The PIN is blocked. Please go to a service counter to unblock it."
    message_zh_text = "密码已锁定，请到服务网点解锁。"


class PinEntryCancelled(SscardError):
    """The resident cancelled PIN entry (national −31, the native socket's PIN sources): no PIN
    reached the card."""

    code = "PIN_ENTRY_CANCELLED"
    message_en = "PIN entry was cancelled."
    message_zh_text = "密码输入已取消。"
    retriable = True


class PinEntryTimeout(SscardError):
    """No PIN was entered within the call's PIN timeout (national −32): no PIN reached the card."""

    code = "PIN_ENTRY_TIMEOUT"
    message_en = "PIN entry timed out."
    message_zh_text = "密码输入超时。"
    retriable = True


class ParameterError(SscardError):
    """A national-interface call the socket cannot carry out (national −14, 参数错误): a bad
    argument, a malformed request line, step 2 without step 1, no PIN pad."""

    code = "PARAMETER_ERROR"
    message_en = "Invalid parameter."
    message_zh_text = "参数错误。"


class ControlUnsupported(ParameterError):
    """A reader connection with no PC/SC control channel (``SCardControl``): a simulated card, a
    replay.  A PARAMETER_ERROR (−14): the call asked for a PIN pad this reader does not have."""

    message_en = "This reader has no control channel (no PIN pad)."
    message_zh_text = "参数错误：该读卡器没有控制通道（无密码键盘）。"


class CardLocked(SscardError):
    code = "CARD_LOCKED"
    message_en = "The card's application is permanently locked. Please go to a service counter."
    message_zh_text = "卡片应用已永久锁定，请到服务网点办理。"


class AuthRequired(SscardError):
    code = "AUTH_REQUIRED"
    message_en = "The card requires terminal authentication (PSAM or HSM) to read {element}."
    message_zh_text = "读取{element}需要终端认证（PSAM或加密机）。"
    retriable = False
    zh_fallbacks: ClassVar[dict[str, str]] = {"element": "该数据"}

    def __init__(self, element: str, detail: str | None = None, *, element_zh: str | None = None) -> None:
        self.element = element
        super().__init__(detail, element=element, element_zh=element_zh)


class PsamMissing(SscardError):
    """No PSAM to authenticate with: no SAM reader configured or found, or its slot is empty (−2201)."""

    code = "PSAM_MISSING"
    message_en = "No PSAM (security module) is available. Check that it is seated in the reader's SAM slot."
    message_zh_text = "未找到PSAM卡（安全模块），请检查读卡器SAM卡座。"


class AlgorithmUnsupported(SscardError):
    code = "ALGORITHM_UNSUPPORTED"
    message_en = "The card's algorithm ({algorithm}) is not supported by the key service."
    message_zh_text = "密钥服务不支持该卡的算法（{algorithm}）。"

    def __init__(self, algorithm: str, detail: str | None = None) -> None:
        super().__init__(detail, algorithm=algorithm)


class PsamKeyMissing(SscardError):
    code = "PSAM_KEY_MISSING"
    message_en = "The PSAM holds no {key} key for this card (key level insufficient)."
    message_zh_text = "PSAM卡中没有该卡的{key}密钥（密钥级别不足）。"

    def __init__(self, key: str, detail: str | None = None) -> None:
        super().__init__(detail, key=key)


class PsamError(SscardError):
    code = "PSAM_ERROR"
    message_en = "The PSAM refused a command (status {sw})."
    message_zh_text = "PSAM卡执行命令失败（状态字{sw}）。"

    def __init__(self, sw: int, detail: str | None = None) -> None:
        super().__init__(detail, sw=f"{sw:04X}")


class CardNotGenuine(SscardError):
    """The card's internal-authentication answer differs from the key service's: refuse the card."""

    code = "CARD_NOT_GENUINE"
    message_en = "The card failed authentication: it may not be a genuine social security card."
    message_zh_text = "卡片认证失败，可能不是真实有效的社会保障卡。"


class TerminalAuthFailed(SscardError):
    code = "TERMINAL_AUTH_FAILED"
    message_en = (
        "The card rejected the terminal's authentication: the PSAM or HSM keys do not match this card, "
        "or the card is not genuine."
    )
    message_zh_text = "卡片拒绝了终端认证：PSAM或加密机密钥与该卡不匹配，或卡片不是真卡。"


class HsmResponseInvalid(SscardError):
    code = "HSM_RESPONSE_INVALID"
    message_en = "The HSM's answer is not valid ({problem})."
    message_zh_text = "加密机返回的数据无效（{problem}）。"

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(self, problem: str, detail: str | None = None, *, problem_zh: str | None = None) -> None:
        super().__init__(detail, problem=problem, problem_zh=problem_zh)


class NotSignedIn(SscardError):
    code = "NOT_SIGNED_IN"
    message_en = "No resident is signed in at this terminal."
    message_zh_text = "当前终端没有已登录的用户。"


class SessionActive(SscardError):
    code = "SESSION_ACTIVE"
    message_en = "A resident is already signed in at this terminal. Sign out first."
    message_zh_text = "当前终端已有用户登录，请先退出。"


class DeviceNotFound(SscardError):
    """A serial device's port does not exist (not plugged in, wrong name, no udev link)."""

    code = "DEVICE_NOT_FOUND"
    message_en = "The device {device} is not connected. Check its cable and the configured port."
    message_zh_text = "设备{device}未连接，请检查连接线和端口配置。"
    retriable = True

    def __init__(self, device: str, detail: str | None = None) -> None:
        super().__init__(detail, device=device)


class DeviceRemoved(SscardError):
    """A serial device vanished mid-use (USB unplugged); the terminal keeps serving the others."""

    code = "DEVICE_REMOVED"
    message_en = "The device {device} was disconnected. Plug it back in; it resumes by itself."
    message_zh_text = "设备{device}已断开，重新插上后会自动恢复。"
    retriable = True

    def __init__(self, device: str, detail: str | None = None) -> None:
        super().__init__(detail, device=device)


class DeviceTimeout(SscardError):
    code = "DEVICE_TIMEOUT"
    message_en = "The device {device} did not answer in time."
    message_zh_text = "设备{device}未及时响应。"
    retriable = True

    def __init__(self, device: str, detail: str | None = None) -> None:
        super().__init__(detail, device=device)


class FrameError(SscardError):
    """A serial frame that fails its checks (length, checksum, header) and could not be resynchronised."""

    code = "FRAME_ERROR"
    message_en = "The device sent a damaged message ({problem})."
    message_zh_text = "设备返回的数据已损坏（{problem}）。"
    retriable = True

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(self, problem: str, detail: str | None = None, *, problem_zh: str | None = None) -> None:
        super().__init__(detail, problem=problem, problem_zh=problem_zh)


class ScanRejected(SscardError):
    """A scan that is not a credential: garbage, too long, non-printable.  The scanner keeps listening."""

    code = "SCAN_REJECTED"
    message_en = "The scanned code was not accepted ({reason}). Please scan again."
    message_zh_text = "扫码内容无效（{reason}），请重新扫码。"
    retriable = True

    def __init__(self, reason: str, detail: str | None = None) -> None:
        # ``reason`` is a stable code (``non_printable`` …), shown as it is in both languages.
        super().__init__(detail, reason=reason)


class IdCardNoCard(SscardError):
    code = "ID_CARD_NO_CARD"
    message_en = "No resident ID card on the reader. Please place the card on the reader."
    message_zh_text = "未检测到身份证，请将身份证放在读卡区。"
    retriable = True


class IdCardSelectFailed(SscardError):
    code = "ID_CARD_SELECT_FAILED"
    message_en = "The resident ID card could not be selected. Please place it on the reader again."
    message_zh_text = "身份证选卡失败，请重新放置身份证。"
    retriable = True


class IdCardReadFailed(SscardError):
    code = "ID_CARD_READ_FAILED"
    message_en = "The resident ID card could not be read. Please place it on the reader again."
    message_zh_text = "读取身份证失败，请重新放置身份证。"
    retriable = True


class IdCardError(SscardError):
    code = "ID_CARD_ERROR"
    message_en = "The ID-card reader reported status {status}."
    message_zh_text = "身份证阅读器返回状态{status}。"

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(detail, status=f"{status:02X}")


class BadRecord(SscardError):
    code = "BAD_RECORD"
    message_en = "The card returned an invalid {element}: {reason}."
    message_zh_text = "卡片返回的{element_zh}数据无效：{reason}。"
    zh_fallbacks: ClassVar[dict[str, str]] = {"reason": "详见英文信息"}

    def __init__(
        self,
        element: str,
        reason: str,
        element_zh: str | None = None,
        detail: str | None = None,
        *,
        reason_zh: str | None = None,
    ) -> None:
        self.element = element
        self.reason = reason
        # Without a Chinese name for the element, none: its English key stays in the English message.
        super().__init__(detail, element=element, reason=reason, element_zh=element_zh or "", reason_zh=reason_zh)


class CardError(SscardError):
    code = "CARD_ERROR"
    message_en = "The card refused the command (status {sw})."
    message_zh_text = "卡片拒绝执行命令（状态字 {sw}）。"

    def __init__(self, sw: int, detail: str | None = None) -> None:
        self.sw = sw
        super().__init__(detail, sw=f"{sw:04X}")


# --- local configuration, traces and usage ----------------------------------------------------


class UsageError(SscardError):
    code = "USAGE_ERROR"
    message_en = "{problem}."
    message_zh_text = "用法错误：{problem_zh}。"

    def __init__(self, problem: str, problem_zh: str | None = None, detail: str | None = None) -> None:
        # problem_zh stays in to_dict() (it always has been); without one, no English stands in for it.
        super().__init__(detail, problem=problem, problem_zh=problem_zh or "详见英文信息")


class ConfigError(SscardError):
    code = "CONFIG_ERROR"
    message_en = "Configuration problem: {problem}."
    message_zh_text = "配置错误：{problem}。"

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(
        self,
        problem: str,
        detail: str | None = None,
        *,
        problem_zh: str | None = None,
        key: str | None = None,
        file: str | None = None,
    ) -> None:
        # ``problem_zh``: the problem in Chinese, so that message_zh is wholly Chinese; ``key``
        # ("reader.itype") and ``file`` (path, or "env NAME") let a program point at the mistake.
        super().__init__(detail, problem=problem, problem_zh=problem_zh, key=key, file=file)


class TraceMismatch(SscardError):
    """A replayed trace and the code under test disagree: the test, not the card, is at fault."""

    code = "TRACE_MISMATCH"
    message_en = "Replay diverged from the recorded trace: {problem}."
    message_zh_text = "回放与录制的APDU记录不一致：{problem}。"

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(self, problem: str, detail: str | None = None, *, problem_zh: str | None = None) -> None:
        super().__init__(detail, problem=problem, problem_zh=problem_zh)


class TraceInvalid(TraceMismatch):
    """A trace file that is not a valid trace (unreadable, bad header, bad exchange line), before
    any replay: a TRACE_MISMATCH in kind (the test input is at fault), with its own code."""

    code = "TRACE_INVALID"
    message_en = "The APDU trace is not valid: {problem}."
    message_zh_text = "APDU记录文件格式无效。"


class ReplayPinRefused(SscardError):
    """A ``replay:`` reader asked to take a PIN: a recording holds ``**`` for it, so any PIN would
    "verify".  Only tests opt in (``accept_any_pin``), never a kiosk."""

    code = "REPLAY_PIN_REFUSED"
    message_en = (
        "A recorded trace cannot check a PIN, so a replay reader refuses PIN operations "
        "(tests opt in with accept_any_pin / sscard replay --accept-any-pin)."
    )
    message_zh_text = "回放的APDU记录无法核对密码，回放读卡器拒绝密码操作（仅测试可显式允许）。"


class PrivateFileError(SscardError):
    """A path for a key or a file of personal data that is not a plain file sscard may use."""

    code = "FILE_REFUSED"
    message_en = "The file {path} cannot be used: {problem}."
    message_zh_text = "文件{path}不可使用：{problem_zh}。"

    def __init__(self, path: str, problem: str, problem_zh: str, detail: str | None = None) -> None:
        super().__init__(detail, path=path, problem=problem, problem_zh=problem_zh)


class Timeout(SscardError):
    code = "TIMEOUT"
    message_en = "Timed out waiting for {what}."
    message_zh_text = "等待{what}超时。"

    zh_fallbacks: ClassVar[dict[str, str]] = {"what": "操作完成"}

    def __init__(self, what: str, detail: str | None = None, *, what_zh: str | None = None) -> None:
        super().__init__(detail, what=what, what_zh=what_zh)


# --- the medical insurance platform (sscard.medical: e-voucher resolution, docs/medical.md) -------


class EcUnreachable(SscardError):
    """The platform's e-voucher endpoint (``EC_URL``) did not answer: refused connection, DNS,
    TLS, or no whole answer within the timeout.  ``sent`` says whether the request may have
    reached the platform (it is never sent again either way: the platform may have processed it)."""

    code = "EC_UNREACHABLE"
    message_en = "The medical insurance platform could not be reached ({problem})."
    message_zh_text = "无法连接医保平台（{problem}）。"
    retriable = True

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(
        self, problem: str, detail: str | None = None, *, sent: bool = False, problem_zh: str | None = None
    ) -> None:
        super().__init__(detail, problem=problem, sent=sent, problem_zh=problem_zh)


class EcRefused(SscardError):
    """The platform answered and said no (``code`` not 0): its code and message are kept as given."""

    code = "EC_REFUSED"
    message_en = "The medical insurance platform refused the e-voucher (code {platform_code}): {platform_message}"
    message_zh_text = "医保平台拒绝了该电子凭证：{platform_message}"

    #: The platform's message is shown in Chinese only when it is Chinese (the resolver decides).
    zh_fallbacks: ClassVar[dict[str, str]] = {"platform_message": "详见英文信息"}

    def __init__(
        self,
        platform_code: str,
        platform_message: str,
        detail: str | None = None,
        *,
        platform_message_zh: str | None = None,
    ) -> None:
        super().__init__(
            detail,
            platform_code=platform_code,
            platform_message=platform_message,
            platform_message_zh=platform_message_zh,
        )


class EcBadAnswer(SscardError):
    """The platform's answer is not what ``ec.query`` answers: not JSON, no ``code``, ``data``
    that is not a JSON object (inside its JSON string), a person without an ecToken, too large."""

    code = "EC_BAD_ANSWER"
    message_en = "The medical insurance platform's answer could not be used ({problem})."
    message_zh_text = "医保平台的应答无法解析（{problem}）。"

    zh_fallbacks: ClassVar[dict[str, str]] = {"problem": "详见英文信息"}

    def __init__(self, problem: str, detail: str | None = None, *, problem_zh: str | None = None) -> None:
        super().__init__(detail, problem=problem, problem_zh=problem_zh)


# --- the card-application seam (sscard.cardapp) ----------------------------------------------


class NoApplication(NotSsc):
    """NOT_SSC (the existing contract: code and Chinese message unchanged), naming what was tried.

    ``tried`` holds ``(name, title_en, reason)`` per application, in the order tried; the names
    are in :meth:`to_dict` as ``applications`` and the English message says why each one did not
    recognise the card.
    """

    def __init__(self, tried: Sequence[tuple[str, str, str | None]] = ()) -> None:
        detail = (
            "tried " + "; ".join(f"{name} ({title}): {reason or 'not on this card'}" for name, title, reason in tried)
            if tried
            else None
        )
        super().__init__(detail, applications=[name for name, _title, _reason in tried])
        self.tried = tuple(name for name, _title, _reason in tried)


class OtherApplication(NotSsc):
    """NOT_SSC for a card that was read, as another application, when something only a social
    security card has was asked for (``--format ireadcardbas``, ``--photo``): the code and exit
    status of a card that is no SSC (the contract before the seam), the message naming what it is.
    ``kind`` (``"bank"``, ``"health"``) is in :meth:`to_dict`."""

    message_en = (
        "This card is not a social security card: it carries the {title} ({kind}), "
        "and {option} applies to social security cards only."
    )
    message_zh_text = "此卡不是社会保障卡，读到的是{title}；{option}仅适用于社会保障卡。"
    zh_fallbacks: ClassVar[dict[str, str]] = {"title": "另一种卡应用", "option": "此项"}

    def __init__(
        self,
        kind: str = "",
        title: str = "another card application",
        option: str = "this",
        *,
        title_zh: str | None = None,
        option_zh: str | None = None,
    ) -> None:
        super().__init__(None, kind=kind, title=title, option=option, title_zh=title_zh, option_zh=option_zh)


class RecordFlaggedInvalid(BadRecord):
    """A record the card itself marks invalid (flag ``FF``; the health card's vendor return code 112).

    Still ``BAD_RECORD`` to every caller that branches on the code; the subclass lets the vendor
    format (:mod:`sscard.national.health`) tell it from a malformed record (103) without reading
    the message.
    """

    message_en = "The card marks its {element} record as invalid (flag {flag})."
    message_zh_text = "卡片将{element_zh}记录标记为无效（标志{flag}）。"

    def __init__(self, element: str = "record", element_zh: str = "记录", flag: int = 0xFF) -> None:
        self.element, self.reason, self.flag = element, f"record flagged invalid ({flag:02X})", flag
        # BadRecord's constructor has no place for the flag, so the base sets every field at once.
        SscardError.__init__(self, None, element=element, reason=self.reason, element_zh=element_zh, flag=f"{flag:02X}")


#: Every code in the hierarchy, for docs and for the tests that keep codes stable.
def all_error_classes() -> list[type[SscardError]]:
    seen: list[type[SscardError]] = []
    stack: list[type[SscardError]] = [SscardError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


# --- session tokens (sscard.tokens, docs/tokens.md) --------------------------------------------------
# Re-exported by sscard.tokens, which raises them; the codes are final.


class TokenRejected(SscardError):
    """Base of the errors that reject a token (not raised itself).

    A backend answers these with "please sign in again" (HTTP 401); :class:`TokenKeyError` is a
    configuration problem on the verifier's side and is deliberately not one of them.
    """


class TokenMalformed(TokenRejected):
    """Not a token of this format: empty, truncated, bad base64url, not JSON, an unknown version,
    or claims of the wrong type.  ``detail`` says which part, never its content."""

    code = "TOKEN_MALFORMED"
    message_en = "This is not a valid session token."
    message_zh_text = "会话令牌格式无效。"


class TokenInvalid(TokenRejected):
    """The signature does not verify with any trusted key: the token was altered, or a key the
    verifier does not trust (another terminal's, an old one) signed it."""

    code = "TOKEN_INVALID"
    message_en = "The session token's signature is not valid: it was altered or not issued by a trusted terminal."
    message_zh_text = "会话令牌签名无效：令牌已被篡改，或并非由受信任的终端签发。"


class TokenExpired(TokenRejected):
    code = "TOKEN_EXPIRED"
    message_en = "The session has expired. Please sign in again."
    message_zh_text = "会话已过期，请重新登录。"

    def __init__(self, expires_at: int | None = None, detail: str | None = None) -> None:
        self.expires_at = expires_at
        super().__init__(detail, expires_at=expires_at)

    @property
    def message(self) -> str:
        if self.expires_at is None:
            return super().message
        return _token_with_detail(
            f"The session expired at {_token_utc(self.expires_at)}. Please sign in again.", self.detail
        )

    @property
    def message_zh(self) -> str:
        if self.expires_at is None:
            return super().message_zh
        return f"会话已于 {_token_utc(self.expires_at)} 过期，请重新登录。"


class TokenNotYetValid(TokenRejected):
    """``iat`` lies further in the future than the leeway: almost always a clock that is wrong,
    on the kiosk or on the verifier — which is why it is not reported as tampering."""

    code = "TOKEN_NOT_YET_VALID"
    message_en = "The session token was issued in the future. Check the clocks of the kiosk and of this computer."
    message_zh_text = "会话令牌的签发时间晚于当前时间，请检查自助终端和本机的时钟。"

    def __init__(self, issued_at: int | None = None, detail: str | None = None) -> None:
        self.issued_at = issued_at
        super().__init__(detail, issued_at=issued_at)

    @property
    def message(self) -> str:
        if self.issued_at is None:
            return super().message
        return _token_with_detail(
            f"The session token was issued in the future ({_token_utc(self.issued_at)}). "
            "Check the clocks of the kiosk and of this computer.",
            self.detail,
        )

    @property
    def message_zh(self) -> str:
        if self.issued_at is None:
            return super().message_zh
        return f"会话令牌的签发时间（{_token_utc(self.issued_at)}）晚于当前时间，请检查自助终端和本机的时钟。"


class TokenWrongTerminal(TokenRejected):
    """The signature verifies, but the token names another terminal than the one expected."""

    code = "TOKEN_WRONG_TERMINAL"
    message_en = "The session token was issued by another terminal."
    message_zh_text = "会话令牌由其他终端签发。"

    def __init__(
        self, terminal_id: str | None = None, expected_terminal_id: str | None = None, detail: str | None = None
    ) -> None:
        self.terminal_id = terminal_id
        self.expected_terminal_id = expected_terminal_id
        super().__init__(detail, terminal_id=terminal_id, expected_terminal_id=expected_terminal_id)

    @property
    def message(self) -> str:
        if self.terminal_id is None or self.expected_terminal_id is None:
            return super().message
        return _token_with_detail(
            f"The session token was issued by terminal {self.terminal_id}, not by {self.expected_terminal_id}.",
            self.detail,
        )

    @property
    def message_zh(self) -> str:
        if self.terminal_id is None or self.expected_terminal_id is None:
            return super().message_zh
        return f"会话令牌由终端 {self.terminal_id} 签发，而非 {self.expected_terminal_id}。"


class TokenKeyError(SscardError):
    """A key cannot be used: file missing or unreadable, not an Ed25519 key, or a private key file
    that other users can read.  A problem of the verifier's (or issuer's) setup, not of the token."""

    code = "TOKEN_KEY_ERROR"
    message_en = "Session key problem: {problem}."
    message_zh_text = "会话密钥错误：{problem_zh}。"

    def __init__(
        self,
        problem: str = "the key cannot be used",
        problem_zh: str = "密钥不可用",
        path: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.path = path
        super().__init__(detail, problem=problem, problem_zh=problem_zh, path=path)


#: Every error sscard.tokens raises, for documentation and tests.
TOKEN_ERRORS: tuple[type[SscardError], ...] = (
    TokenMalformed,
    TokenInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenWrongTerminal,
    TokenKeyError,
)


def _token_with_detail(text: str, detail: str | None) -> str:
    return f"{text} ({detail})" if detail else text


def _token_utc(seconds: int) -> str:
    from datetime import datetime, timezone  # here: only a token error's message needs it

    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix time)"
