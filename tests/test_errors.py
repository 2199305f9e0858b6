"""The error hierarchy: stable codes, messages in both languages, the JSON error form."""

from __future__ import annotations

import inspect

import pytest

import sscard.tokens  # noqa: F401 - its token errors join the hierarchy when imported
from sscard import errors
from sscard.errors import BadRecord, CardError, PinIncorrect, SscardError, all_error_classes

# Codes are a public contract (kiosk software branches on them): this list only ever grows.
STABLE_CODES = {
    "ERROR",
    "CARD_CHANGED",
    "PSAM_MISSING",
    "ALGORITHM_UNSUPPORTED",
    "PSAM_KEY_MISSING",
    "PSAM_ERROR",
    "CARD_NOT_GENUINE",
    "TERMINAL_AUTH_FAILED",
    "HSM_RESPONSE_INVALID",
    "NOT_SIGNED_IN",
    "SESSION_ACTIVE",
    "TOKEN_MALFORMED",
    "TOKEN_INVALID",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_WRONG_TERMINAL",
    "TOKEN_KEY_ERROR",
    "NO_SERVICE",
    "NO_READER",
    "NO_CARD",
    "CARD_REMOVED",
    "CARD_RESET",
    "READER_BUSY",
    "CARD_MUTE",
    "TRANSPORT_ERROR",
    "NOT_SSC",
    "PIN_FORMAT",
    "PIN_INCORRECT",
    "PIN_MISMATCH",
    "PIN_BLOCKED",
    "CARD_LOCKED",
    "AUTH_REQUIRED",
    "BAD_RECORD",
    "CARD_ERROR",
    "USAGE_ERROR",
    "CONFIG_ERROR",
    "TRACE_MISMATCH",
    "TIMEOUT",
    # issue 11
    "TRACE_INVALID",
    "REPLAY_PIN_REFUSED",
    "FILE_REFUSED",
    # issue 13: the native socket's calls
    "PIN_ENTRY_CANCELLED",
    "PIN_ENTRY_TIMEOUT",
    "PARAMETER_ERROR",
    # issue 14: the medical insurance platform's e-voucher resolution
    "EC_UNREACHABLE",
    "EC_REFUSED",
    "EC_BAD_ANSWER",
}


def test_codes_are_unique_and_stable() -> None:
    # A subclass that keeps its parent's code (ServiceLost is a NO_SERVICE) refines it; new codes are unique.
    codes = [cls.code for cls in all_error_classes() if "code" in vars(cls)]
    assert len(codes) == len(set(codes))
    assert set(codes) >= STABLE_CODES


def _instance(cls: type[SscardError]) -> SscardError:
    samples: dict[type[SscardError], SscardError] = {
        errors.PinIncorrect: errors.PinIncorrect(2),
        errors.AuthRequired: errors.AuthRequired("name"),
        errors.BadRecord: errors.BadRecord("name", "not GB18030", "姓名"),
        errors.CardError: errors.CardError(0x6A88),
        errors.ConfigError: errors.ConfigError("bad value"),
        errors.HsmResponseInvalid: errors.HsmResponseInvalid("not hex"),
        errors.PsamError: errors.PsamError(0x6581),
        errors.PsamKeyMissing: errors.PsamKeyMissing("RKSSSE"),
        errors.AlgorithmUnsupported: errors.AlgorithmUnsupported("SSF33"),
        errors.DeviceNotFound: errors.DeviceNotFound("/dev/sscard-qr"),
        errors.DeviceRemoved: errors.DeviceRemoved("/dev/sscard-qr"),
        errors.DeviceTimeout: errors.DeviceTimeout("/dev/sscard-idcard"),
        errors.FrameError: errors.FrameError("bad checksum"),
        errors.ScanRejected: errors.ScanRejected("non-printable"),
        errors.IdCardError: errors.IdCardError(0x33),
        errors.TraceMismatch: errors.TraceMismatch("extra command"),
        errors.TraceInvalid: errors.TraceInvalid("header atr is not hex"),
        errors.PrivateFileError: errors.PrivateFileError("/tmp/key", "a FIFO", "命名管道"),
        errors.Timeout: errors.Timeout("card"),
        errors.UsageError: errors.UsageError("no terminal", "没有终端"),
    }
    if cls in samples:
        return samples[cls]
    # Classes defined outside sscard.errors join the hierarchy when their module is imported (the
    # service's BadRequest, …), so which ones are seen depends on what ran before: give every
    # required argument an English sample rather than listing them here.
    required = [
        name
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name != "self"
        and parameter.default is inspect.Parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    return cls(**dict.fromkeys(required, "sample"))


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.code)
def test_every_error_has_both_messages(cls: type[SscardError]) -> None:
    error = _instance(cls)
    data = error.to_dict()
    assert data["code"] == cls.code
    assert data["message"] and data["message_zh"]
    assert "{" not in data["message"] and "{" not in data["message_zh"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in data["message_zh"])
    assert cls.code in str(error)


def test_fields_reach_the_json_form() -> None:
    assert PinIncorrect(2).to_dict()["tries_left"] == 2
    assert "2" in PinIncorrect(2).message_zh
    assert CardError(0x6A88).to_dict()["sw"] == "6A88"
    bad = BadRecord("birth_date", "not BCD", "出生日期").to_dict()
    assert bad["element"] == "birth_date" and "出生日期" in bad["message_zh"]


# --- the one error table (issue 12): exit code, HTTP status, national codes, per code -------------


def test_every_code_has_a_row_of_the_one_table() -> None:
    """Every error there is — sscard.errors', the session tokens', the service's — has a row, so no
    front end falls back to a default for a code nobody classified."""
    import sscard.service.problems  # noqa: F401 - its service errors join the hierarchy when imported

    abstract = {"ERROR", "SERVICE_ERROR"}  # bases never raised themselves
    codes = {cls.code for cls in all_error_classes()} - abstract
    assert "TOKEN_EXPIRED" in codes and "BAD_REQUEST" in codes  # the check sees the outside classes
    assert codes - set(errors.ERROR_TABLE) == set()
    assert set(errors.ERROR_TABLE) - abstract - {"INTERNAL"} <= codes  # and names no code that does not exist


def test_the_front_ends_read_the_one_table() -> None:
    from sscard.cli.util import EXIT_CODES
    from sscard.national import RETURN_CODES, return_code
    from sscard.national.health import VENDOR_CODES, vendor_code
    from sscard.service.problems import HTTP_STATUS, http_status

    for code, row in errors.ERROR_TABLE.items():
        assert http_status(code) == (errors.DEFAULT_HTTP_STATUS if row.http_status is None else row.http_status)
        assert (code in HTTP_STATUS) == (row.http_status is not None)
        assert (code in RETURN_CODES) == (row.national_code is not None)
        assert (code in VENDOR_CODES) == (row.health_code is not None)
        if row.category not in (errors.INTERNAL, errors.REQUEST):
            assert EXIT_CODES[code] == row.category.exit_code
    assert return_code(CardError(0x6A82)) == -0x6A82 and return_code(None) == 0
    assert vendor_code(errors.NoReader()) == errors.DEFAULT_HEALTH_CODE
    assert errors.NoCard().row.category is errors.ENVIRONMENT and errors.exit_code("NO_CARD") == 3


def test_a_code_the_table_does_not_know_is_an_internal_error() -> None:
    assert errors.row_of("NO_SUCH_CODE") is errors.UNLISTED
    assert errors.exit_code("NO_SUCH_CODE") == 1
    assert errors.http_status("NO_SUCH_CODE") == errors.DEFAULT_HTTP_STATUS == 409
