"""A social security card in software: the ISO 7816-4 behaviour of docs/card-reference.md §1–§4, per persona.

Why one module of over 400 lines: :class:`SimulatedCard` is one command dispatcher over one
security state, the card's ISO 7816-4 behaviour; its bank and health applications, crypto, keys
and encoding are already modules of their own.

This is the card on the other side of the wire, not part of the middleware: it parses command
APDUs and answers response APDUs exactly as a card would, including the awkward parts real cards
have (T=0 ``61xx``/GET RESPONSE, ``6Cxx`` on a wrong Le, refused SFI addressing, a PIN counter) so
that the middleware's processors and fallbacks are exercised by the test suite, in process or
through pcscd's virtual reader (:mod:`sscard.sim.vpcd`).

Volatile state — the selected DF/EF, the PIN-verified flag, the last challenge, a pending GET
RESPONSE — lives in one place and is reset by :meth:`SimulatedCard.power_on`, like a real card's
RAM.  The PIN and its counter persist for the card's lifetime (its EEPROM) but never reach the
persona file.

Commands are a table (``_COMMANDS``: INS → allowed CLAs and handler).  Card authentication
(docs/card-auth.md, docs/card-reference.md §5) is two of them: INTERNAL AUTHENTICATE proves the card knows its
diversified IA key, EXTERNAL AUTHENTICATE checks the terminal's cryptogram over the last challenge
and sets :attr:`SecurityState.external_auth_ok`, which opens the files of ``behaviour.external_auth``.
The card's keys are a key set's master keys (``sim/data/test-keys.toml``) diversified with the
card's own EF05 data (:mod:`sscard.sim.crypto`), never anything from :mod:`sscard.psam`.
"""

from __future__ import annotations

import collections
import enum
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sscard.apdu.command import Command
from sscard.apdu.sw import SW
from sscard.sim.crypto import (
    CardData,
    UnsupportedAlgorithm,
    algorithm_of,
    block_size,
    diversify_levels,
    encrypt,
    pad,
)
from sscard.sim.emv import PPSE_NAME, SimulatedEmv
from sscard.sim.encoding import PBOC_DEBIT_AID, SSSE_AID, pboc_fci, record_files, ssse_fci
from sscard.sim.health import HealthApplet
from sscard.sim.keys import KeyUsage, load_test_keys
from sscard.sim.model import Persona

MF_FID = 0x3F00
#: Command headers kept in :attr:`SimulatedCard.command_log`.
COMMAND_LOG_SIZE = 10_000
PIN_DATA_MIN, PIN_DATA_MAX = 2, 6
#: ISO 7816-4 "command incompatible with file structure" (READ RECORD on a binary EF, or back).
SW_INCOMPATIBLE_FILE = 0x6981
_SHORT_MAX = 256
#: INTERNAL AUTHENTICATE ``00 88 00 00`` as seen in real readers (docs/card-reference.md §2, docs/card-auth.md).
KEY_REF_IA = 0x00
#: EXTERNAL AUTHENTICATE ``00 82 00 0A``: P2 is RKSSSE's reference (docs/card-reference.md §2).
KEY_REF_RKSSSE = 0x0A
#: INTERNAL AUTHENTICATE carries the terminal's 16 random bytes (``Lc 10``, docs/card-reference.md §2).
IA_DATA_LENGTH = 16
#: A wrong EXTERNAL AUTHENTICATE cryptogram: the plain ``6300`` of docs/card-auth.md, no try counter.
SW_AUTH_FAILED = 0x6300


class CardGone(Exception):
    """The simulated card has been pulled (``remove_after`` reached) and answers nothing any more.

    Deliberately not an :class:`~sscard.errors.SscardError`: it is the card's side of the wire.
    Whoever holds the card (the in-process transport, the vpcd link) turns it into what a reader
    would report, using :attr:`SimulatedCard.present`.
    """


class DF(enum.Enum):
    """The dedicated files this card knows; the PBOC app exists only on a bank-card persona."""

    MF = "MF"
    SSSE = "SSSE"
    PBOC = "PBOC"
    #: The PPSE directory ``2PAY.SYS.DDF01`` of a persona with ``[bank]`` (sscard.sim.emv).
    PPSE = "PPSE"
    #: The resident health card's DDF1 (sim/health.py), on a persona with a ``[health]`` section.
    HEALTH = "DDF1"


@dataclass
class SecurityState:
    """What the card believes about the current session (reset at power-on)."""

    pin_verified: bool = False
    #: Set by a good EXTERNAL AUTHENTICATE with RKSSSE (docs/card-auth.md); cleared by a bad one,
    #: by selecting another DF and by reset.
    external_auth_ok: bool = False
    #: The last GET CHALLENGE answer, for EXTERNAL AUTHENTICATE to check against.  Good for the
    #: next command only: any command but GET RESPONSE takes it away (docs/card-auth.md).
    challenge: bytes | None = None


@dataclass(frozen=True)
class RecordFile:
    """A linear EF of TLV records (EF05, EF06); the SFI is the FID's low five bits (docs/card-reference.md §2)."""

    fid: int
    records: tuple[bytes, ...]


@dataclass(frozen=True)
class BinaryFile:
    """A transparent EF (EF07 fingerprint, EF08 photo)."""

    fid: int
    data: bytes


ElementaryFile = RecordFile | BinaryFile


@dataclass(frozen=True)
class _Reply:
    data: bytes = b""
    sw: int = SW.OK


class _Refused(Exception):
    """Raised by a handler to answer a bare status word; never leaves this module."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


class SimulatedCard:
    """One card, built from a :class:`~sscard.sim.model.Persona`.

    ``remove_after``: after that many APDUs the card is gone and :meth:`process` raises
    :class:`CardGone`, so a test can pull the card at every point of an operation.
    ``remove_during``: the card executes that APDU (a VERIFY counts the try) and is pulled before
    its answer leaves, the case where the terminal cannot know what the card decided.
    ``rng`` supplies GET CHALLENGE bytes; pass a deterministic one to make traces reproducible.
    """

    def __init__(
        self,
        persona: Persona,
        *,
        remove_after: int | None = None,
        remove_during: int | None = None,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.persona = persona
        self.remove_after = remove_after
        self.remove_during = remove_during
        #: CLA INS P1 P2 of every command received, oldest first (headers only: a PIN never lands
        #: here).  Tests read it to prove operations were not interleaved or that no VERIFY was sent.
        self.command_log: collections.deque[bytes] = collections.deque(maxlen=COMMAND_LOG_SIZE)
        self.apdu_count = 0
        self._rng = rng
        self._gone = False
        self._pin = persona.pin.value
        self._tries = persona.pin.tries_left
        self._files: dict[int, ElementaryFile] = {}
        if persona.ssc:
            for fid, records in record_files(persona).items():
                self._files[fid] = RecordFile(fid, tuple(records))
            self._files[0xEF07] = BinaryFile(0xEF07, persona.fingerprint)
            self._files[0xEF08] = BinaryFile(0xEF08, persona.photo)
        self._df = DF.MF
        self._ef: int | None = None
        self._pending: tuple[bytes, int] | None = None
        #: The challenge the command being processed may use (taken from the security state).
        self._challenge: bytes | None = None
        self._keys: dict[KeyUsage, bytes] = {}
        self.security = SecurityState()
        #: The bank application of a persona with ``[bank]``; it answers while DF.PBOC is current.
        self.emv = SimulatedEmv(persona.bank) if persona.bank is not None else None
        self._health = HealthApplet(persona.health, persona.atr, persona.keyset, rng) if persona.health else None

    # -- the CardLike interface -------------------------------------------------------------

    @property
    def atr(self) -> bytes:
        return self.persona.atr

    @property
    def protocol(self) -> str:
        return self.persona.protocol

    def power_on(self) -> None:
        """Cold or warm reset: the RAM state goes, the PIN counter stays."""
        self._check_present()
        self._df = DF.MF
        self._ef = None
        self._pending = None
        self.security = SecurityState()

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with response data + SW1 SW2."""
        self._check_present()
        self.apdu_count += 1
        self.command_log.append(bytes(apdu[:4]))
        try:
            reply = self._dispatch(apdu)
        except _Refused as refused:
            reply = _Reply(sw=refused.sw)
        if self.remove_during is not None and self.apdu_count >= self.remove_during:
            self._gone = True
            raise CardGone(f"simulated card {self.persona.name} pulled while answering APDU {self.apdu_count}")
        return reply.data + reply.sw.to_bytes(2, "big")

    # -- for tests --------------------------------------------------------------------------

    @property
    def present(self) -> bool:
        return not self._gone and (self.remove_after is None or self.apdu_count < self.remove_after)

    @property
    def tries_left(self) -> int:
        return self._tries

    @property
    def pin_verified(self) -> bool:
        return self.security.pin_verified

    @property
    def current_ef(self) -> int | None:
        return self._ef

    def file(self, fid: int) -> ElementaryFile:
        return self._files[fid]

    def card_key(self, usage: KeyUsage) -> bytes:
        """This card's diversified IA or RKSSSE key (docs/card-auth.md "Diversification").

        The persona's key set gives the master key for the card's algorithm; the simulator's
        profile (``[profile]`` of ``test-keys.toml``) gives the factors, built from EF05 tags 01 and
        07 *as stored on the card* (``[raw]`` overrides included) and the ATR — what an issuer
        would have used at personalisation, and what a terminal reads back.  Raises
        :class:`~sscard.sim.crypto.UnsupportedAlgorithm` for SSF33 and unknown flags.
        """
        key = self._keys.get(usage)
        if key is None:
            algorithm = algorithm_of(self.persona.behaviour.algorithm)
            test_keys = load_test_keys()
            master = test_keys.keyset(self.persona.keyset).master(usage, algorithm)
            factors = test_keys.profile.factors(usage, self._card_data())
            key = self._keys[usage] = diversify_levels(algorithm, master, factors)
        return key

    def _card_data(self) -> CardData:
        records = self._files.get(0xEF05)
        values = {r[0]: r[2:] for r in records.records} if isinstance(records, RecordFile) else {}
        return CardData(
            identification_code=values.get(0x01, b""), card_number=values.get(0x07, b""), atr=self.persona.atr
        )

    # -- dispatch ---------------------------------------------------------------------------

    def _check_present(self) -> None:
        if not self.present:
            self._gone = True
            raise CardGone(f"simulated card {self.persona.name} pulled after {self.apdu_count} APDUs")

    def _dispatch(self, apdu: bytes) -> _Reply:
        if len(apdu) < 2 or apdu[1] != 0xC0:
            self._pending = None  # GET RESPONSE must follow at once (ISO 7816-4 §7.6.1)
            # A challenge is good for the next command only (docs/card-auth.md), malformed or
            # refused ones included; GET RESPONSE fetching it on a T=0 card is still its exchange.
            self._challenge, self.security.challenge = self.security.challenge, None
        else:
            self._challenge = None
        try:
            command = Command.from_bytes(apdu)
        except ValueError:
            raise _Refused(SW.WRONG_LENGTH) from None
        if command.cla not in (0x00, 0x80, 0x84):
            raise _Refused(SW.CLA_NOT_SUPPORTED)
        if self._health is not None and self._health.claims(command, self._df is DF.HEALTH):
            return self._health_command(command)
        entry = _COMMANDS.get(command.ins)
        if entry is None:
            raise _Refused(SW.INS_NOT_SUPPORTED)
        classes, handler = entry
        if command.cla not in classes:
            raise _Refused(SW.CLA_NOT_SUPPORTED)
        if self.persona.behaviour.locked and self._df is DF.SSSE and command.ins != 0xA4:
            raise _Refused(SW.APPLICATION_LOCKED)
        reply = handler(self, command)
        if reply.data and self.persona.behaviour.get_response and command.ins != 0xC0:
            self._pending = (reply.data, reply.sw)
            return _Reply(sw=_more_bytes(len(reply.data)))
        return reply

    def _health_command(self, command: Command) -> _Reply:
        """DDF1's commands (sim/health.py): the applet answers, the card keeps the volatile state."""
        assert self._health is not None
        if self._health.selects_ddf1(command):
            self._enter(DF.HEALTH)
        answer = self._health.process(
            command, ef=self._ef, authenticated=self.security.external_auth_ok, challenge=self._challenge
        )
        self._ef = answer.ef
        if answer.authenticated is not None:
            self.security.external_auth_ok = answer.authenticated
        if answer.challenge is not None:
            self.security.challenge = answer.challenge
        if answer.data and self.persona.behaviour.get_response:
            self._pending = (answer.data, answer.sw)
            return _Reply(sw=_more_bytes(len(answer.data)))
        return _Reply(answer.data, answer.sw)

    # -- SELECT (docs/card-reference.md §1, §2) ----------------------------------------------------------

    def _select(self, command: Command) -> _Reply:
        if command.p1 == 0x04:
            return self._select_by_name(command)
        if command.p1 not in (0x00, 0x02) or command.p2 not in (0x00, 0x04, 0x0C):
            raise _Refused(SW.INCORRECT_P1P2)
        if command.p1 == 0x00 and not command.data:
            fid = MF_FID
        elif len(command.data) == 2:
            fid = int.from_bytes(command.data, "big")
        else:
            raise _Refused(SW.WRONG_LENGTH)
        if fid == MF_FID and command.p1 == 0x00:
            self._enter(DF.MF)
        elif self._df is DF.SSSE and fid in self._files:
            self._ef = fid
        else:
            raise _Refused(SW.FILE_NOT_FOUND)
        return _Reply()

    def _select_by_name(self, command: Command) -> _Reply:
        if command.p2 not in (0x00, 0x0C):
            raise _Refused(SW.INCORRECT_P1P2)
        if not command.data:
            raise _Refused(SW.WRONG_LENGTH)
        bank_fci = self.emv.selects(command.data) if self.emv is not None else None
        if command.data == SSSE_AID and self.persona.ssc:
            df, fci = DF.SSSE, ssse_fci(self.persona.behaviour.algorithm)
        elif bank_fci is not None:
            df, fci = (DF.PPSE if command.data == PPSE_NAME else DF.PBOC), bank_fci
        elif command.data == PBOC_DEBIT_AID and not self.persona.ssc and self.emv is None and self._health is None:
            df, fci = DF.PBOC, pboc_fci()
        else:
            raise _Refused(SW.FILE_NOT_FOUND)
        self._enter(df)
        return _Reply(fci if command.p2 == 0x00 else b"")

    def _enter(self, df: DF) -> None:
        """Make ``df`` current with no EF.  Leaving a DF ends its external authentication.

        docs/card-auth.md: the right lasts "until reset or until another application is
        selected".  Selecting the current DF again keeps it (a terminal may re-select SSSE between
        authenticating and reading); selecting MF or another application does not.
        """
        if df is not self._df:
            self.security.external_auth_ok = False
        self._df, self._ef = df, None

    def _file_for(self, sfi: int) -> ElementaryFile:
        """The EF a READ addresses: the current one (SFI 0) or by SFI, which then becomes current."""
        if sfi == 0:
            if self._ef is None:
                raise _Refused(SW.COMMAND_NOT_ALLOWED_NO_EF)
            ef = self._files[self._ef]
        else:
            if not self.persona.behaviour.sfi:
                raise _Refused(SW.FUNCTION_NOT_SUPPORTED)
            found = [f for f in self._files.values() if f.fid & 0x1F == sfi] if self._df is DF.SSSE else []
            if not found:
                raise _Refused(SW.FILE_NOT_FOUND)
            ef = found[0]
            self._ef = ef.fid
        if ef.fid in self.persona.behaviour.external_auth and not self.security.external_auth_ok:
            raise _Refused(SW.SECURITY_STATUS_NOT_SATISFIED)
        return ef

    # -- READ RECORD / READ BINARY (docs/card-reference.md §2) -------------------------------------------

    def _read_record(self, command: Command) -> _Reply:
        """P2 = SFI << 3 | mode; mode 100 = P1 is a record number, 000 = P1 is the tag (first match)."""
        if self._df is DF.PBOC and self.emv is not None:
            return self._emv_reply(self.emv.read_record(command), command)
        if command.data:
            raise _Refused(SW.WRONG_LENGTH)
        mode = command.p2 & 0x07
        if mode not in (0b100, 0b000) or (mode == 0b100 and command.p1 == 0):
            raise _Refused(SW.INCORRECT_P1P2)
        ef = self._file_for(command.p2 >> 3)
        if not isinstance(ef, RecordFile):
            raise _Refused(SW_INCOMPATIBLE_FILE)
        if mode == 0b100:
            record = ef.records[command.p1 - 1] if command.p1 <= len(ef.records) else None
        else:
            record = next((r for r in ef.records if r[0] == command.p1), None)
        if record is None:
            raise _Refused(SW.RECORD_NOT_FOUND)
        return self._fit_le(record, command.le, available_means_all=True)

    def _read_binary(self, command: Command) -> _Reply:
        """P1 bit 8 clear: 15-bit offset in P1‖P2; set: SFI in P1's low five bits, offset in P2."""
        if command.data:
            raise _Refused(SW.WRONG_LENGTH)
        if command.p1 & 0x80:
            if command.p1 & 0x60 or not command.p1 & 0x1F:
                raise _Refused(SW.INCORRECT_P1P2)
            ef, offset = self._file_for(command.p1 & 0x1F), command.p2
        else:
            ef, offset = self._file_for(0), (command.p1 << 8) | command.p2
        if not isinstance(ef, BinaryFile):
            raise _Refused(SW_INCOMPATIBLE_FILE)
        if offset >= len(ef.data):
            raise _Refused(SW.WRONG_P1P2)
        le = _SHORT_MAX if command.le is None else command.le
        return self._fit_le(ef.data[offset : offset + le], le, available_means_all=False)

    def _gpo(self, command: Command) -> _Reply:
        """GET PROCESSING OPTIONS (``80 A8``) of the bank application (sscard.sim.emv); 6985 elsewhere."""
        if self._df is not DF.PBOC or self.emv is None:
            raise _Refused(SW.CONDITIONS_NOT_SATISFIED)
        return self._emv_reply(self.emv.gpo(command), command)

    def _emv_reply(self, answer: tuple[bytes, int], command: Command) -> _Reply:
        data, sw = answer
        if sw != SW.OK:
            raise _Refused(sw)
        return self._fit_le(data, command.le, available_means_all=True)

    def _fit_le(self, data: bytes, le: int | None, available_means_all: bool) -> _Reply:
        """Le handling (docs/card-reference.md §2): Le absent or 00 takes what there is; too short a Le → 6Cxx.

        A Le longer than the data is answered with the data, unless the persona is ``strict_le``.
        """
        if le is None or le >= _SHORT_MAX:
            return _Reply(data)
        if (available_means_all and le < len(data)) or (le > len(data) and self.persona.behaviour.strict_le):
            raise _Refused(0x6C00 | (len(data) & 0xFF))
        return _Reply(data[:le])

    # -- GET RESPONSE (T=0, docs/card-reference.md §2, §4) -----------------------------------------------

    def _get_response(self, command: Command) -> _Reply:
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.data or command.le is None:
            raise _Refused(SW.WRONG_LENGTH)
        if self._pending is None:
            raise _Refused(SW.CONDITIONS_NOT_SATISFIED)
        rest, final_sw = self._pending
        if command.le < _SHORT_MAX and command.le > len(rest):
            raise _Refused(0x6C00 | len(rest))
        chunk, rest = rest[: command.le], rest[command.le :]
        if rest:
            self._pending = (rest, final_sw)
            return _Reply(chunk, _more_bytes(len(rest)))
        self._pending = None
        return _Reply(chunk, final_sw)

    # -- GET CHALLENGE (docs/card-reference.md §2, §5) ---------------------------------------------------

    def _get_challenge(self, command: Command) -> _Reply:
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.data or command.le not in (4, 8):
            raise _Refused(SW.WRONG_LENGTH)
        challenge = self._rng(command.le)
        self.security.challenge = challenge
        return _Reply(challenge)

    # -- INTERNAL / EXTERNAL AUTHENTICATE (docs/card-auth.md, docs/card-reference.md §5) -----------------

    def _auth_key(self, usage: KeyUsage) -> tuple[bytes, int]:
        """The key and block size, or the refusal: 6A88 outside SSSE (the keys live there), 6A81 SSF33."""
        if self._df is not DF.SSSE:
            raise _Refused(SW.REFERENCE_NOT_FOUND)
        try:
            return self.card_key(usage), block_size(algorithm_of(self.persona.behaviour.algorithm))
        except UnsupportedAlgorithm:
            raise _Refused(SW.FUNCTION_NOT_SUPPORTED) from None

    def _internal_authenticate(self, command: Command) -> _Reply:
        """``00 88 00 00 10 R`` (+ Le) → ``E(K_IA, R)`` (docs/card-reference.md §2): the card proves it is genuine."""
        if command.p1 != 0x00:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.p2 != KEY_REF_IA:
            raise _Refused(SW.REFERENCE_NOT_FOUND)
        key, block = self._auth_key(KeyUsage.IA)
        if len(command.data) != IA_DATA_LENGTH:
            raise _Refused(SW.WRONG_LENGTH)
        algorithm = algorithm_of(self.persona.behaviour.algorithm)
        return self._fit_le(encrypt(algorithm, key, pad(command.data, block)), command.le, available_means_all=True)

    def _external_authenticate(self, command: Command) -> _Reply:
        """``00 82 00 0A Lc E(K_RK, pad(challenge))``: the terminal proves it holds RKSSSE.

        Lc is the algorithm's block (8 3DES, 16 SM4), else 6700; no challenge from the command just
        before, 6984; a wrong cryptogram 6300 and the right is gone (no try counter: the card never
        blocks RKSSSE).
        """
        if command.p1 != 0x00:
            raise _Refused(SW.INCORRECT_P1P2)
        if command.p2 != KEY_REF_RKSSSE:
            raise _Refused(SW.REFERENCE_NOT_FOUND)
        key, block = self._auth_key(KeyUsage.RKSSSE)
        if len(command.data) != block:
            raise _Refused(SW.WRONG_LENGTH)
        if self._challenge is None:
            raise _Refused(SW.REFERENCE_DATA_NOT_USABLE)
        algorithm = algorithm_of(self.persona.behaviour.algorithm)
        expected = encrypt(algorithm, key, pad(self._challenge, block))
        self.security.external_auth_ok = hmac.compare_digest(expected, command.data)
        if not self.security.external_auth_ok:
            raise _Refused(SW_AUTH_FAILED)
        return _Reply()

    # -- PIN (docs/card-reference.md §2, §4) -------------------------------------------------------------

    def _verify(self, command: Command) -> _Reply:
        """VERIFY; without data a status query that never touches the counter (persona ``pin_status``)."""
        if command.p1 or command.p2:
            raise _Refused(SW.INCORRECT_P1P2)
        if not command.data:
            if command.le is not None or not self.persona.behaviour.pin_status:
                raise _Refused(SW.WRONG_LENGTH)
            if self._tries == 0:
                raise _Refused(SW.AUTH_METHOD_BLOCKED)
            if self.security.pin_verified:
                return _Reply()
            raise _Refused(0x63C0 | self._tries)
        if not PIN_DATA_MIN <= len(command.data) <= PIN_DATA_MAX:
            raise _Refused(SW.WRONG_LENGTH)
        if self._tries == 0:
            raise _Refused(SW.AUTH_METHOD_BLOCKED)
        if self.persona.behaviour.pin_sw is not None:
            raise _Refused(self.persona.behaviour.pin_sw)
        pin = _unpack_pin(command.data)
        if pin is None:
            raise _Refused(SW.WRONG_DATA)
        self._check_pin(pin)
        return _Reply()

    def _change_pin(self, command: Command) -> _Reply:
        """CHANGE PIN ``80 5E 01 00 Lc old ‖ FF ‖ new``; a wrong old PIN costs a try like VERIFY."""
        if command.p1 != 0x01 or command.p2 != 0x00:
            raise _Refused(SW.INCORRECT_P1P2)
        if not command.data:
            raise _Refused(SW.WRONG_LENGTH)
        if self._tries == 0:
            raise _Refused(SW.AUTH_METHOD_BLOCKED)
        if self.persona.behaviour.pin_sw is not None:
            raise _Refused(self.persona.behaviour.pin_sw)
        old_raw, separator, new_raw = command.data.partition(b"\xff")
        old, new = _unpack_pin(old_raw), _unpack_pin(new_raw)
        if not separator or old is None or new is None:
            raise _Refused(SW.WRONG_DATA)
        self._check_pin(old)
        self._pin = new
        return _Reply()

    def _check_pin(self, pin: str) -> None:
        """Right: counter back to max and verified.  Wrong: one try less, ``63Cx`` (``63C0`` at zero)."""
        if hmac.compare_digest(pin, self._pin):
            self._tries = self.persona.pin.max_tries
            self.security.pin_verified = True
            return
        self._tries = max(self._tries - 1, 0)
        self.security.pin_verified = False
        raise _Refused(0x63C0 | self._tries)


def _more_bytes(count: int) -> int:
    """``61xx``: ``xx`` more bytes wait for GET RESPONSE (``00`` = 256 or more)."""
    return 0x6100 | (min(count, _SHORT_MAX) & 0xFF)


def _unpack_pin(raw: bytes) -> str | None:
    """Packed BCD digits, an odd count padded with one ``F`` nibble (``12 34 5F`` = "12345")."""
    if not PIN_DATA_MIN <= len(raw) <= PIN_DATA_MAX:
        return None
    digits = raw.hex().upper()
    if digits.endswith("F"):
        digits = digits[:-1]
    return digits if digits.isdigit() else None


_ISO = frozenset({0x00})
_PROPRIETARY = frozenset({0x80})

#: INS → (CLA bytes it is defined for, handler).  Anything else answers 6D00 (or 6E00 for a known
#: INS under the wrong CLA).
_COMMANDS: dict[int, tuple[frozenset[int], Callable[[SimulatedCard, Command], _Reply]]] = {
    0xA4: (_ISO, SimulatedCard._select),
    0xB2: (_ISO, SimulatedCard._read_record),
    0xB0: (_ISO, SimulatedCard._read_binary),
    0xC0: (_ISO, SimulatedCard._get_response),
    0x84: (_ISO, SimulatedCard._get_challenge),
    0x88: (_ISO, SimulatedCard._internal_authenticate),
    0x82: (_ISO, SimulatedCard._external_authenticate),
    0x20: (_ISO, SimulatedCard._verify),
    0x5E: (_PROPRIETARY, SimulatedCard._change_pin),
    0xA8: (_PROPRIETARY, SimulatedCard._gpo),
}
