"""Card authentication on the card's side of the terminal (docs/card-reference.md §5, docs/card-auth.md).

Internal authentication proves the card genuine: the terminal sends 16 random bytes, the card
encrypts them with its diversified IA key, and the key service computes what a genuine card must
answer.  External authentication unlocks a 3rd-generation card's EF06/EF07/EF08: the card's
challenge, encrypted by the key service with the diversified RKSSSE key, goes back in EXTERNAL
AUTHENTICATE.  The two halves are separate functions so the HSM two-step can put a network round
trip between them (:mod:`sscard.psam.hsm`).
"""

from __future__ import annotations

import hmac
import secrets

from sscard.apdu.command import Command, Response
from sscard.apdu.processors import ApduConnection
from sscard.apdu.sw import SW
from sscard.errors import CardError, CardNotGenuine, TerminalAuthFailed
from sscard.psam.crypto import Algorithm, CardFacts, build_factors, pad
from sscard.psam.keys import KeyService
from sscard.psam.profile import Profile

#: Status words with which a card rejects an external-authentication cryptogram.
REJECTED = frozenset({0x6300, 0x6988, SW.SECURITY_STATUS_NOT_SATISFIED}) | frozenset(range(0x63C0, 0x63D0))


def _command(header: bytes, data: bytes, le: int | None = None) -> Command:
    cla, ins, p1, p2 = header
    return Command(cla, ins, p1, p2, data, le)


def ask_internal(connection: ApduConnection, profile: Profile, challenge: bytes | None = None) -> tuple[bytes, bytes]:
    """Send INTERNAL AUTHENTICATE with fresh random data; return (data, the card's answer)."""
    data = challenge if challenge is not None else secrets.token_bytes(profile.internal_data_length)
    response = connection.send(_command(profile.internal_authenticate, data, le=256))
    if response.sw != SW.OK or not response.data:
        raise CardError(response.sw, f"INTERNAL AUTHENTICATE answered {response.sw:04X}")
    return data, response.data


def check_internal(answer: bytes, expected: bytes) -> None:
    """Constant-time comparison; a mismatch means the card does not hold its genuine key."""
    if not hmac.compare_digest(answer, expected):
        raise CardNotGenuine("internal authentication answer differs from the key service's")


def get_challenge(connection: ApduConnection, profile: Profile) -> bytes:
    response = connection.send(Command.from_bytes(profile.get_challenge))
    if response.sw != SW.OK or len(response.data) != profile.challenge_length:
        raise CardError(response.sw, f"GET CHALLENGE answered {len(response.data)} bytes, {response.sw:04X}")
    return response.data


def send_external(connection: ApduConnection, profile: Profile, cryptogram: bytes) -> None:
    """EXTERNAL AUTHENTICATE: must be the very next command after GET CHALLENGE."""
    response: Response = connection.send(_command(profile.external_authenticate, cryptogram))
    if response.sw == SW.OK:
        return
    if response.sw in REJECTED:
        raise TerminalAuthFailed(f"EXTERNAL AUTHENTICATE answered {response.sw:04X}")
    raise CardError(response.sw, f"EXTERNAL AUTHENTICATE answered {response.sw:04X}")


class Authenticator:
    """Both authentications against one card, with one key service and profile."""

    def __init__(self, service: KeyService, profile: Profile) -> None:
        self.service = service
        self.profile = profile

    def internal(self, connection: ApduConnection, facts: CardFacts, algorithm: Algorithm) -> None:
        """Is this card genuine?  CardNotGenuine if not; nothing else is sent to the card."""
        factors = build_factors(self.profile.ia.levels, facts)
        data, answer = ask_internal(connection, self.profile)
        expected = self.service.cryptogram(self.profile.ia, algorithm, factors, data)
        check_internal(answer, expected)

    def external(self, connection: ApduConnection, facts: CardFacts, algorithm: Algorithm) -> None:
        """Unlock EF06/EF07/EF08: challenge, key service, EXTERNAL AUTHENTICATE."""
        factors = build_factors(self.profile.rkssse.levels, facts)
        # The key service (another reader) is asked between the two card commands: the card's
        # challenge is good for its very next command only.
        challenge = get_challenge(connection, self.profile)
        cryptogram = self.service.cryptogram(self.profile.rkssse, algorithm, factors, challenge)
        send_external(connection, self.profile, cryptogram)


def padded_length(algorithm: Algorithm) -> int:
    return len(pad(algorithm, bytes(8)))
