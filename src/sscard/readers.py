"""Turn a reader specification and the configuration into a :class:`~sscard.transports.base.Reader`.

``sim:PERSONA``  the built-in simulated card, in process (no pcscd needed)
``replay:PATH``  a recorded trace, replayed strictly
anything else    PC/SC readers, chosen as below

Kiosk card terminals are often one USB device that pcscd shows as several readers: a contact slot
("ICC"), a contactless pad ("PICC" or "CL") and one or more PSAM slots ("SAM", reference §5).
Each reader gets a *slot kind* from configuration (``[reader] name / contactless / sam``, name
substrings) or else from keywords in its name (``[reader.slots]``, data not code, because vendors
name slots freely).  The resident's card is then looked for in the contact and contactless
readers in the order of the national interface's ``iType`` (reference §6): 1 contact only,
2 contactless only, 3 both with contact first, 4 both with contactless first.  A SAM slot is never
taken for the resident's card, even though it always "holds a card".

Configuring ``name`` alone pins the reader: only readers whose names contain it are used (their
contactless slots included, ordered by ``iType``).

pyscard and the simulator are imported only when asked for, so ``sscard --help`` and replay-only
use never pay for them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from importlib import resources
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
    """The PSAM slots (reference §5), configured or recognised by name."""
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


def open_reader(
    spec: str | None, busy_wait: float = 0.0, config: Config | None = None, *, accept_any_pin: bool = False
) -> Reader:
    """The reader for ``spec`` (which overrides ``config.reader``); PC/SC readers chosen as above.

    ``accept_any_pin`` only matters for ``replay:``: a test's explicit opt-in to PIN operations
    a trace cannot check (they are refused otherwise, REPLAY_PIN_REFUSED).
    """
    if spec and spec.startswith(SIM_PREFIX):
        from sscard.sim import SimulatedCard, load_persona
        from sscard.transports.sim import SimReader

        persona = spec[len(SIM_PREFIX) :] or "typical"
        return SimReader(SimulatedCard(load_persona(persona)), name=f"{SIM_PREFIX}{persona}")
    if spec and spec.startswith(REPLAY_PREFIX):
        from sscard.transports.replay import ReplayReader

        return ReplayReader(spec[len(REPLAY_PREFIX) :], accept_any_pin=accept_any_pin)
    from sscard.transports.pcsc import PcscReader, PcscReaderSet, list_readers

    config = (config or Config(busy_wait=busy_wait)).with_overrides(reader=spec or None)
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


def open_sam_reader(config: Config) -> Reader:
    """The reader holding the PSAM (reference §5): ``[reader] sam``, else a slot named like one.

    ``sim:PSAM`` puts a simulated PSAM (``sscard sim psams``) in an in-process reader.
    PsamMissing (national −2201) when there is none.
    """
    spec = config.sam_reader
    if spec and spec.startswith(SIM_PREFIX):
        from sscard.sim.psam import SimulatedPsam, load_psam
        from sscard.transports.sim import SimReader

        name = spec[len(SIM_PREFIX) :] or "psam"
        return SimReader(SimulatedPsam(load_psam(name)), name=spec)
    from sscard.transports.pcsc import PcscReader, list_readers

    names = list_readers()
    sams = sam_readers(names, config)
    if not sams:
        wanted = f"named like {spec!r}" if spec else f"whose name contains {', '.join(config.sam_keywords)}"
        raise PsamMissing(f"no SAM reader {wanted}; readers: {describe(names, config)}")
    return PcscReader(sams[0], busy_wait=config.busy_wait)


def published_test_keys_path() -> Path:
    """The simulator's published test keys (docs/card-auth.md): software keys for tests only."""
    return Path(str(resources.files("sscard.sim").joinpath("data").joinpath("test-keys.toml")))
