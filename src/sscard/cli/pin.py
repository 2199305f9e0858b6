"""Reading PINs: ``--pin-stdin`` and the hidden prompt, straight into one wiped buffer.

See docs/architecture.md, "PIN handling".

No ``bytes`` or ``str`` of the PIN is made where the input is a real file descriptor; the PIN is
asked for only once the card is known to take it (:func:`pin_card_ready`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from sscard.errors import UsageError

if TYPE_CHECKING:
    from sscard.ssc.pin import Pin

#: The longest PIN line read (a PIN is at most 12 digits; longer input is PIN_FORMAT, not kept).
_PIN_LINE_MAX = 64


def read_pin_line(stream: TextIO) -> Pin | None:
    """The next line of ``stream`` as a Pin (None at end of input), reading no further.

    From a real file descriptor the bytes are read one at a time into a preallocated buffer
    (``os.readv``), so no ``bytes`` or ``str`` copy of the digits is made and the next line is
    left for the next PIN.  A stream without one (``io.StringIO`` in tests) goes through ``str``.
    """
    import os

    from sscard.ssc.pin import Pin

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd < 0 or not hasattr(os, "readv"):
        line = stream.readline()
        return Pin.from_text(line.rstrip("\r\n")) if line else None
    return _read_fd_line(fd)


def _read_fd_line(fd: int) -> Pin | None:
    import os

    from sscard.errors import PinFormat
    from sscard.ssc.pin import Pin, wipe

    buffer = bytearray(_PIN_LINE_MAX)
    view = memoryview(buffer)
    size, ended = 0, False
    try:
        while size < len(buffer):
            if os.readv(fd, [view[size : size + 1]]) == 0:
                break  # end of input
            if buffer[size] == 0x0A:
                ended = True
                break
            size += 1
        else:
            raise PinFormat("PIN line too long")
        if size == 0 and not ended:
            return None
        if size and buffer[size - 1] == 0x0D:
            size -= 1
        return Pin(bytearray(view[:size]))  # the one buffer the terminal wipes
    finally:
        view.release()
        wipe(buffer)


def prompt_pin(prompt: str) -> Pin:
    """A hidden prompt on the controlling terminal, read into a Pin (``getpass`` would give a ``str``)."""
    import os

    try:
        import termios

        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except (ImportError, OSError):  # no controlling terminal (or not POSIX): getpass's own fallbacks
        import getpass

        from sscard.ssc.pin import Pin

        return Pin.from_text(getpass.getpass(prompt))
    try:
        saved = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            os.write(fd, prompt.encode("utf-8"))
            pin = _read_fd_line(fd)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            os.write(fd, b"\n")
    finally:
        os.close(fd)
    if pin is None:
        raise UsageError("no PIN entered", "未输入密码")
    return pin


def pin_card_ready(terminal: Any) -> None:
    """Before asking for a PIN: the reader takes PINs, a card is there, it is an SSC, not blocked.

    One SELECT and the tries-left query (no try spent); NO_CARD, NOT_SSC, PIN_BLOCKED,
    REPLAY_PIN_REFUSED come out here, before anybody types a PIN that could not be used.
    """
    from sscard.errors import PinBlocked
    from sscard.ssc.application import PinState

    terminal.check_pin_allowed()
    if terminal.pin_status().state is PinState.BLOCKED:
        raise PinBlocked("the tries-left query says so; no PIN asked for")
