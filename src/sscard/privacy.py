"""Personal data in logs (PIPL, issue 11 item 12): masked by default, shown only when asked for.

Two mechanisms, each the one place its kind of output is formatted:

* APDU traces: :class:`sscard.transports.trace.ResponseMask` knows which card elements are
  personal and writes their value bytes as ``**`` (tag and length kept), the way
  :func:`~sscard.transports.trace.redact_command` hides PINs.
* Free text: :func:`mask_log_records`, installed by the command line (and so the service) as the
  process's log-record factory, replaces anything shaped like a resident ID number / social
  security number (18 or 15 digits, the last may be ``X``) with ``*`` of the same length -- in
  messages, arguments and tracebacks alike, whoever logged them and whichever handler writes
  them.  Names cannot be recognised in free text, so no log call may format one (reviewed;
  tests/test_privacy.py reads the logs of a whole read and sign-in through the service).

``--show-personal-data`` / ``[logging] show_personal_data`` switch both off for one process
(:func:`show_personal_data`), with a warning logged once.  This module sits at the bottom of the
stack (layer 0) so that every layer can ask :func:`personal_data_shown`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("sscard.privacy")


class _State:
    """This process's choice (one per process, like the log handlers it governs)."""

    shown = False
    warned = False


_state = _State()

#: 18-character resident ID / social security numbers (17 digits and a digit or X) and the old
#: 15-digit ID numbers, standing alone (not inside a longer run of letters and digits).
ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")


def personal_data_shown() -> bool:
    """Whether logs and traces of this process may show personal data in clear (default False)."""
    return _state.shown


def show_personal_data(enabled: bool = True, origin: str = "the Python API") -> None:
    """Opt in to (or back out of) personal data in clear; warns once per process when turned on."""
    _state.shown = enabled
    if enabled and not _state.warned:
        _state.warned = True
        log.warning(
            "personal data (names, social security and ID numbers, card numbers, photos) is shown in clear "
            "in logs and traces (%s): keep such logs private / 日志和跟踪记录将明文显示个人信息，请妥善保管",
            origin,
        )


def mask_text(text: str) -> str:
    """``text`` with every ID-number-shaped run replaced by ``*`` of the same length."""
    if _state.shown or not any(char.isdigit() for char in text):
        return text
    return ID_NUMBER.sub(lambda match: "*" * len(match.group()), text)


def mask_log_records() -> None:
    """Mask every log record this process makes from now on, whoever logs it and whichever handler
    writes it (uvicorn's own included): the message is formatted once, ID numbers masked, and the
    traceback likewise, before any handler sees the record.  Idempotent.  The command line (and so
    ``sscard serve``) calls it first thing; a program embedding sscard may call it too."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "sscard_masking", False):
        return

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if _state.shown:
            return record
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(_FORMATTER.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return record

    masked_record.sscard_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)


_FORMATTER = logging.Formatter()
