"""Errors of the card-application seam, beside :mod:`sscard.errors` until they move into it.

Layer 0, like :mod:`sscard.errors`, which these extend without changing a code: a caller that
branches on ``code`` sees ``NOT_SSC`` and ``BAD_RECORD`` as before.  They live here only because
the one error hierarchy's module is being reorganised at the same time (issue 12: one table from
error class to exit code, HTTP status and national return code); both belong in it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sscard.errors import BadRecord, NotSsc, SscardError


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


class RecordFlaggedInvalid(BadRecord):
    """A record the card itself marks invalid (flag ``FF``; the health card's vendor return code 112).

    Still ``BAD_RECORD`` to every caller that branches on the code; the subclass lets the vendor
    format (:mod:`sscard.health.national`) tell it from a malformed record (103) without reading
    the message.
    """

    message_en = "The card marks its {element} record as invalid (flag {flag})."
    message_zh_text = "卡片将{element_zh}记录标记为无效（标志{flag}）。"

    def __init__(self, element: str = "record", element_zh: str = "记录", flag: int = 0xFF) -> None:
        self.element, self.reason, self.flag = element, f"record flagged invalid ({flag:02X})", flag
        # BadRecord's constructor has no place for the flag, so the base sets every field at once.
        SscardError.__init__(self, None, element=element, reason=self.reason, element_zh=element_zh, flag=f"{flag:02X}")
