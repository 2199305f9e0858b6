"""The APDU layer: command/response types, status words, and small processors stacked on a transport.

Imports only :mod:`sscard.errors` and :mod:`sscard.transports` (never pyscard, pyserial or the CLI).
"""

from sscard.apdu.command import Command, Response
from sscard.apdu.processors import (
    ApduConnection,
    GetResponseProcessor,
    ResendWithLeProcessor,
    TracingProcessor,
    TransportConnection,
    standard_stack,
)
from sscard.apdu.sw import SW, ApduError

__all__ = [
    "SW",
    "ApduConnection",
    "ApduError",
    "Command",
    "GetResponseProcessor",
    "ResendWithLeProcessor",
    "Response",
    "TracingProcessor",
    "TransportConnection",
    "standard_stack",
]
