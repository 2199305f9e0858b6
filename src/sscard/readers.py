"""Turn a reader specification and the configuration into a :class:`~sscard.transports.base.Reader`.

``sim:PERSONA``  the built-in simulated card, in process (no pcscd needed)
``replay:PATH``  a recorded trace, replayed strictly
anything else    PC/SC readers, chosen as below

Kiosk card terminals are often one USB device that pcscd shows as several readers: a contact slot
("ICC"), a contactless pad ("PICC" or "CL") and one or more PSAM slots ("SAM", docs/card-reference.md §5).
Each reader gets a *slot kind* from configuration (``[reader] name / contactless / sam``, name
substrings) or else from keywords in its name (``[reader.slots]``, data not code, because vendors
name slots freely).  The resident's card is then looked for in the contact and contactless
readers in the order of the national interface's ``iType`` (docs/card-reference.md §6): 1 contact only,
2 contactless only, 3 both with contact first, 4 both with contactless first.  A SAM slot is never
taken for the resident's card, even though it always "holds a card".

Configuring ``name`` alone pins the reader: only readers whose names contain it are used (their
contactless slots included, ordered by ``iType``).

Each prefix is an entry of :data:`SCHEMES` (a reader scheme: how to open the resident's card reader
and, where it has one, a PSAM reader); a specification without a known prefix is PC/SC
(:data:`PCSC`).  Every entry imports what it needs when it is used: pyscard for PC/SC, and the
simulator only through the ``sim:`` entry (:mod:`sscard.readers_sim`), so ``sscard --help``,
replays and kiosks on PC/SC readers never load the simulator.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sscard.config import ITYPE_CONTACT, ITYPE_CONTACT_FIRST, ITYPE_CONTACTLESS, Config
from sscard.errors import NoReader, PsamMissing
from sscard.transports.base import Reader

SIM_PREFIX = "sim:"
REPLAY_PREFIX = "replay:"


class SlotKind(enum.Enum):
    CONTACT = "contact"
    CONTACTLESS = "contactless"
    SAM = "sam"


def _contains(pattern: str | None, name: str) -> bool:
    return bool(pattern) and str(pattern).lower() in name.lower()


def _has_keyword(name: str, keywords: Iterable[str]) -> bool:
    """A keyword as a whole word: "CL" is a slot, "CLOUD" is not; "SAM" is a slot, "Samsung" is not."""
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])", name, re.IGNORECASE) for w in keywords)


def slot_kind(name: str, config: Config) -> SlotKind:
    """What a reader is for: configured names first, then the slot keywords in its name."""
    if _contains(config.sam_reader, name):
        return SlotKind.SAM
    if _contains(config.contactless_reader, name):
        return SlotKind.CONTACTLESS
    if _has_keyword(name, config.sam_keywords):
        return SlotKind.SAM
    if _has_keyword(name, config.contactless_keywords):
        return SlotKind.CONTACTLESS
    return SlotKind.CONTACT


def card_readers(names: Sequence[str], config: Config) -> list[str]:
    """The readers to look in for the resident's card, most preferred first (see module docstring)."""
    kinds = {name: slot_kind(name, config) for name in names}
    if config.reader and not config.contactless_reader:
        pool = [name for name in names if _contains(config.reader, name) and kinds[name] is not SlotKind.SAM]
    else:
        pool = [
            name
            for name in names
            if kinds[name] is not SlotKind.SAM
            and (
                (_contains(config.reader, name) if config.reader else kinds[name] is SlotKind.CONTACT)
                or _contains(config.contactless_reader, name)
                or (not config.contactless_reader and kinds[name] is SlotKind.CONTACTLESS)
            )
        ]
    contact = [name for name in pool if kinds[name] is SlotKind.CONTACT]
    contactless = [name for name in pool if kinds[name] is SlotKind.CONTACTLESS]
    if config.itype == ITYPE_CONTACT:
        return contact
    if config.itype == ITYPE_CONTACTLESS:
        return contactless
    return contact + contactless if config.itype == ITYPE_CONTACT_FIRST else contactless + contact


def sam_readers(names: Sequence[str], config: Config) -> list[str]:
    """The PSAM slots (docs/card-reference.md §5), configured or recognised by name."""
    return [name for name in names if slot_kind(name, config) is SlotKind.SAM]


def reader_rows(config: Config) -> list[dict[str, object]]:
    """Every PC/SC reader: name, card present, slot kind, and its rank among the readers a read
    would use (None: not used for the resident's card).  ``sscard readers`` and ``/v1/readers``."""
    from sscard.transports.pcsc import PcscReader, list_readers

    names = list_readers()
    for_card = card_readers(names, config)
    return [
        {
            "name": name,
            "card_present": PcscReader(name).card_present(),
            "kind": slot_kind(name, config).value,
            "preference": for_card.index(name) + 1 if name in for_card else None,
        }
        for name in names
    ]


def describe(names: Sequence[str], config: Config) -> str:
    return ", ".join(f"{name!r} ({slot_kind(name, config).value})" for name in names) or "none"


@dataclass(frozen=True)
class ReaderScheme:
    """One reader-specification prefix: how to open its card reader and, optionally, its PSAM reader.

    ``card(rest, config, accept_any_pin)`` and ``sam(rest, config)`` get the specification after the
    prefix; a scheme without ``sam`` leaves PSAM lookup to PC/SC (the specification then names the
    reader, as before).  Entries import their implementation inside these functions, so registering
    a scheme costs nothing until it is used.
    """

    prefix: str
    card: Callable[[str, Config, bool], Reader]
    sam: Callable[[str, Config], Reader] | None = None


def _sim_card(rest: str, config: Config, accept_any_pin: bool) -> Reader:
    from sscard.readers_sim import open_card  # the only way the reader wiring reaches the simulator

    return open_card(rest)


def _sim_sam(rest: str, config: Config) -> Reader:
    from sscard.readers_sim import open_sam

    return open_sam(rest)


def _replay_card(rest: str, config: Config, accept_any_pin: bool) -> Reader:
    from sscard.transports.replay import ReplayReader

    return ReplayReader(rest, accept_any_pin=accept_any_pin)


def _pcsc_card(spec: str, config: Config, accept_any_pin: bool) -> Reader:
    from sscard.transports.pcsc import PcscReader, PcscReaderSet, list_readers

    config = config.with_overrides(reader=spec or None)
    names = list_readers()
    if not names:
        raise NoReader("pcscd lists no readers")
    chosen = card_readers(names, config)
    if not chosen:
        wanted = {1: "contact", 2: "contactless", 3: "contact or contactless", 4: "contactless or contact"}
        raise NoReader(
            f"no {wanted[config.itype]} reader for the card"
            + (f" matching {config.reader!r}" if config.reader else "")
            + f"; readers: {describe(names, config)}"
        )
    if len(chosen) == 1:
        return PcscReader(chosen[0], busy_wait=config.busy_wait)
    return PcscReaderSet(chosen, busy_wait=config.busy_wait)


def _pcsc_sam(spec: str, config: Config) -> Reader:
    from sscard.transports.pcsc import PcscReader, list_readers

    names = list_readers()
    sams = sam_readers(names, config)
    if not sams:
        wanted = f"named like {spec!r}" if spec else f"whose name contains {', '.join(config.sam_keywords)}"
        raise PsamMissing(f"no SAM reader {wanted}; readers: {describe(names, config)}")
    return PcscReader(sams[0], busy_wait=config.busy_wait)


#: PC/SC: any specification without a registered prefix (a reader-name substring, or none).
PCSC = ReaderScheme("", _pcsc_card, _pcsc_sam)
#: The reader schemes by prefix.  A new scheme is one entry (docs/architecture.md).
SCHEMES: dict[str, ReaderScheme] = {
    SIM_PREFIX: ReaderScheme(SIM_PREFIX, _sim_card, _sim_sam),
    REPLAY_PREFIX: ReaderScheme(REPLAY_PREFIX, _replay_card),
}


def scheme_of(spec: str | None) -> tuple[ReaderScheme, str]:
    """The scheme a specification names and the rest of it; PC/SC with the whole of it otherwise."""
    for prefix, scheme in SCHEMES.items():
        if spec and spec.startswith(prefix):
            return scheme, spec[len(prefix) :]
    return PCSC, spec or ""


def open_reader(
    spec: str | None, busy_wait: float = 0.0, config: Config | None = None, *, accept_any_pin: bool = False
) -> Reader:
    """The reader for ``spec`` (which overrides ``config.reader``); PC/SC readers chosen as above.

    ``accept_any_pin`` only matters for ``replay:``: a test's explicit opt-in to PIN operations
    a trace cannot check (they are refused otherwise, REPLAY_PIN_REFUSED).
    """
    scheme, rest = scheme_of(spec)
    return scheme.card(rest, config or Config(busy_wait=busy_wait), accept_any_pin)


def open_sam_reader(config: Config) -> Reader:
    """The reader holding the PSAM (docs/card-reference.md §5): ``[reader] sam``, else a slot named like one.

    ``sim:PSAM`` puts a simulated PSAM (``sscard sim psams``) in an in-process reader.
    PsamMissing (national −2201) when there is none.
    """
    scheme, rest = scheme_of(config.sam_reader)
    if scheme.sam is not None:
        return scheme.sam(rest, config)
    return _pcsc_sam(config.sam_reader or "", config)


def published_test_keys_path() -> Path:
    """The simulator's published test keys (docs/card-auth.md): software keys for tests only.

    Part of the ``sim:`` scheme: the file ships with the simulator, which is loaded only for it.
    """
    from sscard.readers_sim import test_keys_path

    return test_keys_path()
