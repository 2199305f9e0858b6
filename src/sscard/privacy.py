"""Personal data in logs (PIPL, issue 11 item 12): masked by default, shown only when asked for.

Two mechanisms, each the one place its kind of output is formatted:

* APDU traces: :class:`sscard.transports.trace.ResponseMask` knows which card elements are
  personal and writes their value bytes as ``**`` (tag and length kept), the way
  :func:`~sscard.transports.trace.redact_command` hides PINs.
* Free text: :class:`MaskingFormatter`, the formatter of the command line's and the service's log
  handler, replaces anything shaped like a resident ID number / social security number (18 or 15
  digits, the last may be ``X``) with ``*`` of the same length -- in messages, arguments and
  tracebacks alike, whoever logged them.  Names cannot be recognised in free text, so no log call
  may format one (reviewed; tests/test_privacy.py reads the logs of a whole read and sign-in).

``--show-personal-data`` / ``[logging] show_personal_data`` switch both off for one process
(:func:`show_personal_data`), with a warning logged once.  This module sits at the bottom of the
stack (layer 0) so that every layer can ask :func:`personal_data_shown`.
"""

from __future__ import annotations

import logging
import re

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


class MaskingFormatter(logging.Formatter):
    """A log formatter that runs the whole formatted record (traceback included) through
    :func:`mask_text`, so that no handler that uses it writes an ID number in clear."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))
