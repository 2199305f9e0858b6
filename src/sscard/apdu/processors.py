"""Small processors stacked on a transport, each doing one thing (docs/design.md §2).

The usual stack, outermost first::

    GetResponseProcessor      61xx -> GET RESPONSE until the card is done (docs/card-reference.md §2, §4)
    ResendWithLeProcessor     6Cxx -> the same command again with Le = xx
    TracingProcessor          every raw exchange, redacted, to the log and to an optional sink
    TransportConnection       bytes over the Transport

Tracing sits nearest the wire so a trace shows the GET RESPONSE and resend exchanges the card
really saw, which is what a replay must reproduce.

No command that carries a PIN (or a key cryptogram) is ever sent twice or continued: the
commands whose data :func:`~sscard.transports.trace.redact_command` masks — the one predicate,
:func:`~sscard.transports.trace.is_redacted` — answered with ``6Cxx`` or ``61xx`` become a
:class:`~sscard.errors.CardError` carrying that SW.  A resent VERIFY could spend a second try
(and block the card) without anyone having typed the PIN twice (issue 11).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sscard.apdu.command import SHORT_MAX_LE, Command, Response
from sscard.apdu.sw import ApduError
from sscard.errors import CardError, TransportFailure
from sscard.transports.base import Transport
from sscard.transports.trace import ResponseMask, is_redacted, redact_command

log = logging.getLogger("sscard.apdu")

#: A broken card that answers 61xx forever must not hang a kiosk: no response is longer than this.
MAX_RESPONSE_BYTES = 65536 + 256
#: ... and no response takes more GET RESPONSE rounds than this, for a card that answers 61xx with
#: little or no data each time (twice what MAX_RESPONSE_BYTES needs in full 256-byte pieces).
MAX_GET_RESPONSE_ROUNDS = 2 * (MAX_RESPONSE_BYTES // SHORT_MAX_LE + 1)

#: Receives (redacted command hex, response hex, seconds) for every exchange on the wire.
TraceSink = Callable[[str, str, float], None]


class ApduConnection(Protocol):
    def send(self, command: Command) -> Response: ...


class TransportConnection:
    """The bottom of the stack: encodes the command and decodes the response."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def send(self, command: Command) -> Response:
        return Response.from_bytes(self.transport.transmit(command.to_bytes()))


class TracingProcessor:
    """Logs every exchange at DEBUG level and hands it to ``sink``, command data redacted.

    The log line's response has the resident's personal data masked (:class:`ResponseMask`, PIPL);
    the sink gets the whole response, as a recording must (``sscard record`` keeps its rules).
    """

    def __init__(self, inner: ApduConnection, sink: TraceSink | None = None) -> None:
        self.inner = inner
        self.sink = sink
        self.mask = ResponseMask()

    def send(self, command: Command) -> Response:
        if self.sink is None and not log.isEnabledFor(logging.DEBUG):
            # Nobody to tell (the usual case): skip the clock and the hex formatting.  Saves a
            # couple of µs an APDU on the facade's path (issue 7, docs/performance.md).
            return self.inner.send(command)
        started = time.perf_counter()
        response = self.inner.send(command)
        elapsed = time.perf_counter() - started
        if self.sink is not None or log.isEnabledFor(logging.DEBUG):
            shown = redact_command(command.to_bytes())  # no PIN-bearing copy outlives this line
            if log.isEnabledFor(logging.DEBUG):
                masked = self.mask.response(command.header, response.to_bytes())
                log.debug("%s -> %s (%.1f ms)", shown, masked, elapsed * 1000)
            if self.sink is not None:
                self.sink(shown, response.to_bytes().hex().upper(), elapsed)
        return response


def _refuse_secret_follow_up(command: Command, response: Response) -> None:
    """A PIN-bearing command's ``6Cxx``/``61xx`` is the card's error, never a cue to send again."""
    if is_redacted(command.header):
        raise CardError(
            response.sw,
            f"INS {command.ins:02X} carries a PIN or key cryptogram: answered {response.sw:04X}, not sent again",
        )


class ResendWithLeProcessor:
    """On ``6Cxx`` resend the same command once with ``Le = xx`` (apdu4j RetryWithRightLengthWrapper).

    Never for a PIN-bearing command (module docstring): that is a CARD_ERROR with the SW.
    """

    def __init__(self, inner: ApduConnection) -> None:
        self.inner = inner

    def send(self, command: Command) -> Response:
        response = self.inner.send(command)
        if response.sw1 == 0x6C:
            _refuse_secret_follow_up(command, response)
            return self.inner.send(command.with_le(response.sw2 or SHORT_MAX_LE))
        return response


class GetResponseProcessor:
    """On ``61xx`` fetch the rest with GET RESPONSE (``00 C0 00 00 xx``) and join the pieces.

    Not after a PIN-bearing command (module docstring): that is a CARD_ERROR with the SW.
    """

    def __init__(self, inner: ApduConnection, cla: int = 0x00) -> None:
        self.inner = inner
        self.cla = cla

    def send(self, command: Command) -> Response:
        response = self.inner.send(command)
        if response.sw1 != 0x61:
            # Complete already (nearly every answer): hand it on as is rather than copying its data
            # into a new, equal Response (issue 7, docs/performance.md).
            return response
        _refuse_secret_follow_up(command, response)
        data = bytearray(response.data)
        rounds = 0
        while response.sw1 == 0x61:
            if len(data) > MAX_RESPONSE_BYTES or rounds >= MAX_GET_RESPONSE_ROUNDS:
                raise TransportFailure(
                    f"card kept answering 61xx past the longest possible response ({rounds} GET RESPONSE)"
                )
            rounds += 1
            response = self.inner.send(Command(self.cla, 0xC0, 0x00, 0x00, le=response.sw2 or SHORT_MAX_LE))
            data += response.data
        return Response(bytes(data), response.sw)


def standard_stack(transport: Transport, trace_sink: TraceSink | None = None) -> ApduConnection:
    """The processor stack every card application uses."""
    return GetResponseProcessor(ResendWithLeProcessor(TracingProcessor(TransportConnection(transport), trace_sink)))


def transceive(connection: ApduConnection, command: Command) -> bytes:
    """Send ``command`` and return its data, raising :class:`ApduError` unless the SW is ``9000``."""
    response = connection.send(command)
    if not response.ok:
        raise ApduError(response.sw, response.data)
    return response.data
