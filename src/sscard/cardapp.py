"""The card-application seam: which application a presented card carries, and reading it.

Layer 3 (docs/architecture.md, "Adding a card application").  The terminal facade does not know
the social security card, the resident health card or the bank application by name: it builds a
:class:`ReadContext` (the connection, the ATR, the read options and the terminal's key-service
wiring) and asks :func:`read_card`, which walks a :class:`Registry` in order and lets the first
application that recognises the card read it.

An application is recognised by its :meth:`CardApplication.select`: a SELECT by AID or FID (the
answer tells), or the ATR alone (``context.atr``, no APDU).  The social security card comes first,
so reading one costs exactly the APDUs it always cost: its SELECT SSSE is both the recognition
and the read's first command.  A card no application recognises is NOT_SSC (the existing
contract), naming the applications tried (:class:`~sscard.errors.NoApplication`).

The registry holds rows of data (name, ``module:attribute``, titles, the identifiers it selects);
an application's module is imported only when the card gets that far, so reading a social
security card never imports the bank or health modules (tests/test_cli_startup.py).
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sscard.errors import NoApplication, NotSsc, UsageError

if TYPE_CHECKING:
    from sscard.apdu import ApduConnection
    from sscard.psam.auth import Authenticator

#: The trace header that lists, in order, the applications a recorded read tried (docs/trace-format.md).
APPLICATIONS_HEADER = "applications"


class CardResult(Protocol):
    """What every application's read returns: a frozen result that says what it is."""

    @property
    def kind(self) -> str:
        """The application's registry name: ``"ssc"``, ``"bank"``, ``"health"`` (also the JSON ``kind``)."""
        ...

    @property
    def reader(self) -> str: ...

    @property
    def atr(self) -> bytes: ...

    def to_json(self) -> dict[str, Any]:
        """The JSON contract; it carries ``"kind"``."""
        ...


@dataclass(frozen=True)
class ReadOptions:
    """What the caller of ``Terminal.read`` asked for.  Each application uses what applies to it:
    ``require_cardholder`` and ``authenticate`` are the social security card's (the health card
    reads EF05 alone without a key service by design; the bank application has neither)."""

    require_cardholder: bool = True
    authenticate: bool = False
    today: dt.date | None = None


@dataclass(frozen=True)
class ReadContext:
    """One read in one transaction: everything an application may use, handed down by the facade.

    ``authenticator`` is the terminal's card-authentication wiring (``[keys]``), opened on first
    call; with no key service configured it raises AUTH_REQUIRED, so an application asks for it
    only when ``keys_configured`` is true or it must authenticate.  It is a callable, not an
    object, so a read that needs no key service never opens a PSAM.
    """

    reader: str
    atr: bytes
    connection: ApduConnection
    authenticator: Callable[[], Authenticator]
    keys_configured: bool
    options: ReadOptions = ReadOptions()


class CardApplication(Protocol):
    """One card application, made for one read by its registry row's factory (``factory(context)``)."""

    def select(self) -> None:
        """Recognise and select: return when the card carries this application, which is now
        selected; raise :class:`~sscard.errors.NotSsc` (the reason in its detail) when it does not.
        Any other error (CARD_REMOVED, BAD_RECORD …) ends the read: it is not "absent"."""
        ...

    def read(self) -> CardResult:
        """The whole read after :meth:`select`; all or nothing."""
        ...


@dataclass(frozen=True)
class AppEntry:
    """A registry row: data only; :meth:`load` imports the application's module when first needed."""

    #: The name ``Terminal.read(app=…)`` and ``--app`` take, and the result's ``kind``.
    name: str
    #: ``"package.module:attribute"``: a callable ``(ReadContext) -> CardApplication``.
    target: str
    title_en: str
    title_zh: str
    #: What its :meth:`CardApplication.select` looks for (AIDs, FIDs, DF names), for people and docs.
    identifiers: tuple[str, ...] = ()

    def load(self) -> Callable[[ReadContext], CardApplication]:
        module, _, attribute = self.target.partition(":")
        factory: Callable[[ReadContext], CardApplication] = getattr(importlib.import_module(module), attribute)
        return factory


class Registry:
    """Card applications in the order they are tried.  Immutable: :meth:`with_entry` makes a new one."""

    def __init__(self, entries: Iterable[AppEntry]) -> None:
        self.entries: tuple[AppEntry, ...] = tuple(entries)
        names = [entry.name for entry in self.entries]
        if len(set(names)) != len(names):
            raise ValueError(f"card application names repeat: {names}")

    def __iter__(self) -> Iterator[AppEntry]:
        return iter(self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.entries)

    def get(self, name: str) -> AppEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise UsageError(
            f"unknown card application {name[:20]!r} (known: {', '.join(self.names)})",
            f"未知的卡应用（可选：{'、'.join(e.title_zh for e in self.entries)}）",
        )

    def with_entry(self, entry: AppEntry, *, before: str | None = None) -> Registry:
        """This registry with ``entry`` added at the end, or in front of the application ``before``."""
        entries = list(self.entries)
        index = entries.index(self.get(before)) if before is not None else len(entries)
        entries.insert(index, entry)
        return Registry(entries)

    def candidates(self, app: str | None, recorded: Sequence[str] | None = None) -> tuple[AppEntry, ...]:
        """The rows to try: the one named ``app``; else all of them, or (replaying a trace) the
        ones the recording tried, in its order (:func:`recorded_applications`)."""
        if app is not None:
            return (self.get(app),)
        if recorded is None:
            return self.entries
        return tuple(self.get(name) for name in recorded)


#: The applications sscard knows, social security card first (its recognition is its read's first
#: APDU), then the health card (one SELECT by FID to rule it out) and the bank application (the
#: PPSE and up to two AIDs to rule it out).
APPLICATIONS = Registry(
    (
        AppEntry(
            "ssc",
            "sscard.apps.ssc:SscCardApp",
            "social security card",
            "社会保障卡",
            ("SSSE 7378312E73682EC9E7BBE1B1A3D5CF",),
        ),
        AppEntry("health", "sscard.apps.health:HealthCardApp", "resident health card", "居民健康卡", ("DDF1",)),
        AppEntry(
            "bank",
            "sscard.apps.bank:BankCardApp",
            "bank application",
            "金融应用",
            ("2PAY.SYS.DDF01", "A000000333010101", "A000000333010102"),
        ),
    )
)


def read_card(
    context: ReadContext,
    registry: Registry = APPLICATIONS,
    app: str | None = None,
    recorded: Sequence[str] | None = None,
) -> CardResult:
    """The first application of ``registry`` (or the one named ``app``) that recognises the card, read.

    Everything happens in the caller's transaction.  An application that answers "not here"
    (NOT_SSC) hands over to the next; any other error ends the read as it is.
    """
    tried: list[tuple[str, str, str | None]] = []
    for entry in registry.candidates(app, recorded):
        application = entry.load()(context)
        try:
            application.select()
        except NotSsc as exc:
            tried.append((entry.name, entry.title_en, exc.detail))
            continue
        return application.read()
    raise NoApplication(tried)


def recorded_applications(header: Mapping[str, str]) -> tuple[str, ...]:
    """The applications a recorded read tried, from its trace header (docs/trace-format.md).

    A trace without the ``applications`` line was recorded before card applications were a seam,
    when a read was the social security card's only: replaying it tries ``ssc`` alone, so it stays
    valid.  For the same reason a trace recorded today names what it tried, and keeps replaying
    when another application is registered later.
    """
    value = header.get(APPLICATIONS_HEADER)
    if value is None:
        return ("ssc",)
    return tuple(value.replace(",", " ").split())


def applications_header(registry: Registry, app: str | None = None) -> str:
    """The ``applications`` header value for a read recorded with ``registry`` (and ``app`` pinned)."""
    return " ".join(entry.name for entry in registry.candidates(app))
