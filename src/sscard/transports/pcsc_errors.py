"""pyscard's PC/SC binding, loaded without the rest of pyscard, and PC/SC result codes as sscard errors.

Shared by the connection adapter (:mod:`sscard.transports.pcsc`) and the event source
(:mod:`sscard.transports.pcsc_events`) so that neither imports the other for them (no import
circle); like both, it is imported only when a PC/SC reader is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sscard.errors import (
    AccessDenied,
    CardMute,
    CardRemoved,
    CardReset,
    NoCard,
    NoReader,
    NoService,
    ReaderBusy,
    SscardError,
    Timeout,
    TransportFailure,
)


def _scard_module() -> Any:
    """pyscard's PC/SC binding, ``smartcard.scard``, without the rest of pyscard.

    ``import smartcard.scard`` first runs ``smartcard/__init__``, which imports pyscard's object
    layer (Session, System, the reader factories: about as much again as the binding) that sscard
    never uses; start-up matters for a one-shot ``sscard read`` (issue 11, item 14).  So the
    package is registered unexecuted, and its ``__init__`` runs on the first attribute asked of
    it (``smartcard.Session`` …) for any other code in the process that wants the full pyscard.
    """
    import sys

    if "smartcard" not in sys.modules:
        import importlib.util

        spec = importlib.util.find_spec("smartcard")
        if spec is not None and spec.loader is not None and spec.submodule_search_locations is not None:
            package = importlib.util.module_from_spec(spec)
            loader = spec.loader

            def complete(name: str) -> Any:
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
                return package.__dict__[name] if name in package.__dict__ else getattr(package, name)

            package.__dict__["__getattr__"] = complete
            sys.modules["smartcard"] = package
    import smartcard.scard

    return smartcard.scard


scard = _scard_module()


_ErrorFactory = Callable[[str], SscardError]


def _u32(code: int) -> int:
    """PC/SC codes are DWORDs; pyscard may hand them back signed on some platforms."""
    return code & 0xFFFFFFFF


#: PC/SC result code -> the sscard error a kiosk acts on.  Anything missing is a TransportFailure.
#: A card that is gone reads as NoCard before we were connected and CardRemoved after; see
#: :func:`pcsc_error`.
PCSC_ERRORS: Mapping[int, _ErrorFactory] = {
    _u32(scard.SCARD_E_NO_SERVICE): NoService,
    _u32(scard.SCARD_E_SERVICE_STOPPED): NoService,
    _u32(scard.SCARD_E_NO_READERS_AVAILABLE): NoReader,
    _u32(scard.SCARD_E_UNKNOWN_READER): NoReader,
    _u32(scard.SCARD_E_READER_UNAVAILABLE): NoReader,
    _u32(scard.SCARD_E_NO_SMARTCARD): NoCard,
    _u32(scard.SCARD_W_REMOVED_CARD): CardRemoved,
    _u32(scard.SCARD_E_SHARING_VIOLATION): ReaderBusy,
    _u32(scard.SCARD_W_RESET_CARD): CardReset,
    _u32(scard.SCARD_W_UNRESPONSIVE_CARD): CardMute,
    _u32(scard.SCARD_W_UNPOWERED_CARD): CardMute,
    _u32(scard.SCARD_E_TIMEOUT): lambda detail: Timeout("the card reader", detail, what_zh="读卡器响应"),
    _u32(scard.SCARD_W_SECURITY_VIOLATION): AccessDenied,  # polkit refused (udev/README.md)
}

_CARD_GONE: dict[bool, _ErrorFactory] = {False: NoCard, True: CardRemoved}


def pcsc_error(code: int, action: str, *, connected: bool = True) -> SscardError:
    """The sscard error for a failed PC/SC call; ``action`` says which call, for the log.

    ``connected`` tells whether we held a connection: the same "card is gone" codes then mean the
    card was pulled mid-session (CardRemoved) rather than that there was none to begin with (NoCard).
    """
    code = _u32(code)
    detail = f"{action}: PC/SC 0x{code:08X} ({scard.SCardGetErrorMessage(code)})"
    factory = PCSC_ERRORS.get(code)
    if factory is None:
        return TransportFailure(detail)
    if factory in _CARD_GONE.values():
        factory = _CARD_GONE[connected]
    return factory(detail)
