"""The bank (financial) application of the 3rd-generation SSC, or of any UnionPay card (docs/card-reference.md §11).

The read is the EMV path up to the records and not one step further: SELECT (the PPSE directory
``2PAY.SYS.DDF01`` when the card has one, else the UnionPay AIDs in order), GET PROCESSING OPTIONS
with the PDOL the card asks for filled from a neutral terminal-data table, then READ RECORD for
every record the AFL names.  No GENERATE AC, no transaction, and never a PIN: this module has no
way to build a VERIFY, so none can leave it (a test checks the card's command log).

Like :mod:`sscard.ssc.application` it speaks APDUs through an :class:`~sscard.apdu.ApduConnection`
(GET RESPONSE and ``6Cxx`` are the processors' business) and maps status words to the typed
errors; connection life and transactions belong to the caller.  Every malformed answer — FCI,
PDOL, GPO, AFL, record, PAN — is a BAD_RECORD naming the element; the caller gets a whole
:class:`~sscard.bank.card.BankCard` or an error, never part of one.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sscard.apdu import SW, ApduConnection, Command
from sscard.bank.card import BankCard, card_from_elements
from sscard.bank.emv import AflEntry, ProcessingOptions, parse_gpo, pdol_data
from sscard.bank.tlv import Tlv, bad, encode, parse_one
from sscard.errors import CardError, CardLocked, NotSsc

#: Proximity payment system environment (docs/card-reference.md §11.1), selected by name.
PPSE_NAME = b"2PAY.SYS.DDF01"
#: UnionPay debit and credit applications, in the order tried without a PPSE (docs/card-reference.md §1).
UNIONPAY_DEBIT = bytes.fromhex("A000000333010101")
UNIONPAY_CREDIT = bytes.fromhex("A000000333010102")
UNIONPAY_AIDS: tuple[bytes, ...] = (UNIONPAY_DEBIT, UNIONPAY_CREDIT)
#: Status words meaning "no such application here": try the next candidate.
NOT_HERE = frozenset({SW.FILE_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED, SW.INS_NOT_SUPPORTED, SW.CLA_NOT_SUPPORTED})
#: SELECT answered "selected file invalidated": the application is blocked (docs/card-reference.md §11.2).
SW_APP_BLOCKED = 0x6283


@dataclass(frozen=True)
class Selected:
    """The application SELECT found: its AID, how it was found, and its FCI's objects by tag."""

    aid: bytes
    selected_by: str
    fci: Mapping[int, bytes]

    @property
    def pdol(self) -> bytes | None:
        return self.fci.get(0x9F38)


def directory(fci: bytes) -> tuple[bytes, ...]:
    """The AIDs of a PPSE answer (``6F [84] [A5 [BF0C [61 [4F AID] [50] [87 prio]]…]]``), by priority.

    Entries with a priority (``87`` low nibble 1–15, 1 highest) come first, the others after them
    in card order.  An entry without a good ``4F`` is a BAD_RECORD, not skipped.
    """
    template = parse_one(fci, 0x6F, "ppse")
    proprietary = template.find(0xA5)
    issuer_data = proprietary.find(0xBF0C) if proprietary is not None else None
    ranked: list[tuple[int, int, bytes]] = []
    entries = (issuer_data.children or ()) if issuer_data is not None else ()
    for index, entry in enumerate(entries):
        if entry.tag != 0x61:
            continue
        values = _primitives(entry.children or (), "ppse")
        aid = values.get(0x4F)
        if aid is None or not 5 <= len(aid) <= 16:
            raise bad("ppse", f"directory entry {index + 1} has no 5-16 byte AID (4F)")
        priority = values.get(0x87, b"\x00")
        if len(priority) != 1:
            raise bad("ppse", f"directory entry {index + 1}: priority (87) is not 1 byte")
        rank = priority[0] & 0x0F or 16
        ranked.append((rank, index, aid))
    return tuple(aid for _rank, _index, aid in sorted(ranked))


def _primitives(objects: Iterable[Tlv], element: str) -> dict[int, bytes]:
    """Primitive objects of one template by tag; the same tag twice with two values is BAD_RECORD."""
    out: dict[int, bytes] = {}
    for obj in objects:
        if obj.constructed:
            continue
        if obj.tag in out and out[obj.tag] != obj.value:
            raise bad(element, f"object {obj.tag:X} appears twice with different values")
        out[obj.tag] = obj.value
    return out


class BankApplication:
    """The EMV read of one card over one APDU connection.

    ``now`` and ``rng`` supply the transaction date/time and the unpredictable number of the PDOL
    data (deterministic ones make traces reproducible); ``aids`` are tried in order without a PPSE.
    """

    def __init__(
        self,
        connection: ApduConnection,
        *,
        aids: tuple[bytes, ...] = UNIONPAY_AIDS,
        now: Callable[[], dt.datetime] = dt.datetime.now,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.connection = connection
        self.aids = aids
        self._now = now
        self._rng = rng
        self._ppse_present = False

    # -- selection --------------------------------------------------------------------------

    def _select_by_name(self, name: bytes) -> bytes | None:
        """SELECT by DF name: the FCI, or None when the card has no such application."""
        response = self.connection.send(Command(0x00, 0xA4, 0x04, 0x00, name, le=256))
        if response.ok:
            return response.data
        if response.sw in NOT_HERE or response.sw == SW_APP_BLOCKED:
            return None
        if response.sw == SW.APPLICATION_LOCKED:
            raise CardLocked()
        raise CardError(response.sw, f"SELECT {name.hex().upper()}: {SW.describe(response.sw)}")

    def candidates(self) -> list[tuple[bytes, str]]:
        """SELECT PPSE: its entries by priority when the card has one, else :attr:`aids` (``"aid"``)."""
        ppse = self._select_by_name(PPSE_NAME)
        self._ppse_present = ppse is not None
        listed = directory(ppse) if ppse is not None else ()
        return [(aid, "ppse") for aid in listed] or [(aid, "aid") for aid in self.aids]

    def select(self, candidates: list[tuple[bytes, str]] | None = None) -> Selected:
        """The first of ``candidates`` (default :meth:`candidates`) that answers SELECT; NOT_SSC if none."""
        if candidates is None:
            candidates = self.candidates()
        for aid, how in candidates:
            fci = self._select_by_name(aid)
            if fci is None:
                continue
            template = parse_one(fci, 0x6F, "fci")
            values = _primitives(template.children or (), "fci")
            proprietary = template.find(0xA5)
            if proprietary is not None:
                values.update(_primitives(proprietary.children or (), "fci"))
            name = values.get(0x84)
            if name is None or not 5 <= len(name) <= 16:
                raise bad("fci", "no 5-16 byte DF name (84)")
            if not name.startswith(aid):
                raise bad("fci", f"DF name {name.hex().upper()} is not the application selected")
            return Selected(name, how, values)
        tried = ", ".join(aid.hex().upper() for aid, _how in candidates)
        ppse = "present" if self._ppse_present else "absent"
        raise NotSsc(f"no bank application: PPSE {ppse}, tried {tried}")

    def select_usable(self) -> tuple[Selected, ProcessingOptions]:
        """Selection as a payment terminal does it: an application whose GPO answers ``6985``
        (conditions of use not satisfied) is taken off the candidate list and the next one is
        selected (EMV Book 1 12.4, Book 3 10.1).  NOT_SSC when no candidate is left.

        :meth:`read` keeps reporting such a refusal as CARD_ERROR for a caller that chose this
        application; the facade's recognition (:mod:`sscard.apps.bank`) uses this instead, so a
        card whose bank application cannot be used is not mistaken for a readable bank card.
        """
        candidates = self.candidates()
        refused: list[str] = []
        while True:
            try:
                selected = self.select(candidates)
            except NotSsc as exc:
                if refused:
                    raise NotSsc(f"{exc.detail}; GPO refused (6985) by {', '.join(refused)}") from None
                raise
            try:
                return selected, self.get_processing_options(selected)
            except CardError as exc:
                if exc.sw != SW.CONDITIONS_NOT_SATISFIED:
                    raise
            refused.append(selected.aid.hex().upper())
            index = next(i for i, (aid, _how) in enumerate(candidates) if selected.aid.startswith(aid))
            candidates = candidates[index + 1 :]

    # -- GPO and records --------------------------------------------------------------------

    def get_processing_options(self, selected: Selected) -> ProcessingOptions:
        """GPO ``80 A8 00 00 Lc 83 L <PDOL data> 00`` (docs/card-reference.md §11.3)."""
        data = pdol_data(selected.pdol, now=self._now(), rng=self._rng)
        response = self.connection.send(Command(0x80, 0xA8, 0x00, 0x00, encode(0x83, data), le=256))
        if not response.ok:
            raise CardError(response.sw, f"GET PROCESSING OPTIONS: {SW.describe(response.sw)}")
        return parse_gpo(response.data)

    def read_record(self, sfi: int, record: int) -> tuple[Tlv, ...]:
        """READ RECORD ``00 B2 rec (SFI<<3)|4 00``: the objects of its ``70`` template."""
        response = self.connection.send(Command(0x00, 0xB2, record, (sfi << 3) | 0x04, le=256))
        if response.sw == SW.RECORD_NOT_FOUND:
            raise bad("afl", f"names record {record} of SFI {sfi}, which the card does not have (6A83)")
        if not response.ok:
            raise CardError(response.sw, f"READ RECORD {record} SFI {sfi}: {SW.describe(response.sw)}")
        return parse_one(response.data, 0x70, "record").children or ()

    def read_records(self, afl: Iterable[AflEntry]) -> dict[int, bytes]:
        """Every record the AFL names, their primitive objects merged by tag (a clash is BAD_RECORD)."""
        objects: list[Tlv] = []
        for entry in afl:
            for record in entry.records:
                objects.extend(self.read_record(entry.sfi, record))
        return _primitives(objects, "record")

    # -- the whole read ---------------------------------------------------------------------

    def read(self) -> BankCard:
        """SELECT, GPO, READ RECORD: the card's bank data, whole or an error."""
        selected = self.select()
        return self.read_selected(selected, self.get_processing_options(selected))

    def read_selected(self, selected: Selected, options: ProcessingOptions) -> BankCard:
        """READ RECORD per the AFL of a GPO already answered: the rest of :meth:`read`."""
        data = dict(options.extra)
        for tag, value in self.read_records(options.afl).items():
            if tag in data and data[tag] != value:
                raise bad("record", f"object {tag:X} differs between the GPO answer and a record")
            data[tag] = value
        return card_from_elements(selected.aid, selected.selected_by, selected.fci, data, options.aip)
