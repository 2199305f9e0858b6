"""The resident health card (居民健康卡) application: DDF1, EF05 free-read data, EF06 after authentication.

Layer 3, beside the social security card's application: it speaks APDUs through an
:class:`~sscard.apdu.ApduConnection` and knows nothing of PC/SC, readers or transactions (the
caller holds the transaction).  Facts: docs/card-reference.md (health card section);
what is read and what is unconfirmed: docs/health-card.md.

The flow, each step's bytes in ``data/layout.toml``:

1. SELECT DDF1 by its file identifier.  ``6A82`` (no such file) means the card carries no health
   application: :class:`~sscard.errors.NotSsc`, the card-application seam's "not here"
   (:mod:`sscard.cardapp` then tries the next application and, if none is left, names them all).
2. EF05, one READ RECORD per element in record-identifier mode (P1 = tag; P2 = SFI << 3, the
   social security card's economy: no SELECT EF), Le = max length + 2.  A card that refuses SFI
   addressing is read with SELECT EF + current-EF reads from then on.
3. EF06.  With a key service: GET CHALLENGE, the key service's cryptogram, EXTERNAL AUTHENTICATE
   (:class:`sscard.psam.auth.Authenticator`, the card-authentication machinery of the social
   security card, with the health card's profile ``data/auth-profile.toml``), then the reads.
   Without one: the reads are tried; a card that answers ``6982`` leaves ``cardholder = None`` and
   an ``AUTH_REQUIRED`` warning — the read still succeeds, because the EF05 card number *is* the
   resident's ID number, which is what a front desk needs.

The ID number's ISO 7064 MOD 11-2 check character is verified; a wrong one is a warning
(``ID_NUMBER_CHECK``), not an error, like the social security number's on the SSC: a
mis-personalised card still identifies its holder to the person at the desk, who needs to be told.
A value that is not an ID number at all (wrong length, letters) is a BAD_RECORD.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from sscard.apdu import SW, ApduConnection, ApduError, Command
from sscard.apdu.atr import historical_bytes
from sscard.apdu.processors import transceive
from sscard.errors import AuthRequired, BadRecord, CardError, CardLocked, NotSsc
from sscard.health.layout import Element, Layout, load_layout, parse_record
from sscard.ssc import checks, codes
from sscard.ssc.records import RecordWarning

if TYPE_CHECKING:
    from sscard.psam.keys import KeyService
    from sscard.psam.profile import Profile

#: The health card's card-authentication profile, relative to the ``sscard.health`` package.
AUTH_PROFILE_RESOURCE = "data/auth-profile.toml"
#: Status words by which a card says "no SFI addressing here" (as for the social security card).
SFI_REFUSED = frozenset({SW.FUNCTION_NOT_SUPPORTED, SW.INCORRECT_P1P2, SW.FILE_NOT_FOUND, SW.WRONG_P1P2})
#: SELECT DDF1 answers meaning "no health application on this card".
NOT_HEALTH = frozenset({SW.FILE_NOT_FOUND, SW.FUNCTION_NOT_SUPPORTED, SW.INS_NOT_SUPPORTED, SW.CLA_NOT_SUPPORTED})
#: The typed fields of :class:`HealthCard` and :class:`HealthCardholder`; other layout keys go to ``extra``.
CARD_FIELDS = ("card_type", "version", "issuer_name", "issue_date", "card_number", "city_code")
HOLDER_FIELDS = ("name", "gender_code", "nation_code", "birth_date")


def mask_id_number(value: str | None) -> str | None:
    """``**************123X``: the last four characters only, as the ID-card events show them."""
    if value is None:
        return None
    return "*" * max(len(value) - 4, 0) + value[-4:]


def _iso(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


@dataclass(frozen=True)
class HealthCardholder:
    """EF06 (cardholder data).  Every tag behind it is unconfirmed (docs/health-card.md)."""

    name: str | None = field(default=None, repr=False)
    gender_code: str | None = None
    nation_code: str | None = None
    birth_date: dt.date | None = field(default=None, repr=False)
    #: Elements a corrected layout adds, by their layout key.
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def gender(self) -> str | None:
        return codes.gender_label(self.gender_code)

    @property
    def nation(self) -> str | None:
        return codes.nation_label(self.nation_code)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "gender_code": self.gender_code,
            "gender": self.gender,
            "nation_code": self.nation_code,
            "nation": self.nation,
            "birth_date": _iso(self.birth_date),
        }
        out.update({key: _iso(value) for key, value in self.extra.items()})
        return out


@dataclass(frozen=True)
class HealthCard:
    """What a health-card read learnt: EF05, EF06 when it could be read, and the warnings.

    ``card_number`` is the resident's ID number: personal data, so ``repr`` (and with it every
    log line and traceback that shows this object) masks it; ``to_json()`` is the data contract
    and carries it whole, as the social security card's JSON carries the SSN.
    """

    atr: bytes
    card_type: str | None = None
    version: str | None = None
    issuer_name: str | None = None
    issue_date: dt.date | None = None
    card_number: str | None = field(default=None, repr=False)
    city_code: str | None = None
    cardholder: HealthCardholder | None = None
    warnings: tuple[RecordWarning, ...] = ()
    #: The key service whose cryptogram unlocked EF06, if one did.
    authenticated_by: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    #: The reader it was read in (set by the facade; not part of the JSON, as for the SSC).
    reader: str = ""

    kind: ClassVar[str] = "health"

    def __repr__(self) -> str:
        return (
            f"HealthCard(card_number={mask_id_number(self.card_number)!r}, card_type={self.card_type!r}, "
            f"version={self.version!r}, city_code={self.city_code!r}, cardholder={self.cardholder!r}, "
            f"warnings={[w.code for w in self.warnings]!r})"
        )

    @property
    def id_number(self) -> str | None:
        """The EF05 card number is the resident ID number (docs/card-reference.md, health card section)."""
        return self.card_number

    def to_json(self) -> dict[str, Any]:
        """``{"kind": "health", "card": {…}, "cardholder": {…} | null, "warnings": […]}``."""
        card: dict[str, Any] = {
            "card_type": self.card_type,
            "version": self.version,
            "issuer_name": self.issuer_name,
            "issue_date": _iso(self.issue_date),
            "card_number": self.card_number,
            "city_code": self.city_code,
            "atr": self.atr.hex().upper(),
        }
        card.update({key: _iso(value) for key, value in self.extra.items()})
        out: dict[str, Any] = {
            "kind": self.kind,
            "card": card,
            "cardholder": self.cardholder.to_json() if self.cardholder is not None else None,
            "warnings": [w.to_dict() for w in self.warnings],
        }
        if self.authenticated_by is not None:
            out["authenticated_by"] = self.authenticated_by
        return out


@dataclass(frozen=True)
class Ddf1Info:
    """What SELECT DDF1 answered: the FCI (often empty) and the card's algorithm flag."""

    fci: bytes
    algorithm: int


@functools.cache
def load_auth_profile() -> Profile:
    """The bundled health-card authentication profile (every byte of it unconfirmed), read once."""
    from sscard.psam.profile import load_profile

    return load_profile(str(resources.files("sscard.health").joinpath(AUTH_PROFILE_RESOURCE)))


class HealthApplication:
    """Operations of the DDF1 application over one APDU connection."""

    def __init__(self, connection: ApduConnection, layout: Layout | None = None) -> None:
        self.connection = connection
        self.layout = layout if layout is not None else load_layout()
        #: ``False`` once the card refused SFI addressing (or the layout says "select").
        self.sfi_supported: bool | None = False if self.layout.apdu.read_mode == "select" else None
        self._current_ef: str | None = None

    # -- selection --------------------------------------------------------------------------

    def select(self) -> Ddf1Info:
        """SELECT DDF1 by FID; a card without it is NOT_SSC ("not a card this application knows")."""
        self._current_ef = None
        try:
            fci = transceive(self.connection, Command.from_bytes(self.layout.apdu.select_ddf1))
        except ApduError as exc:
            if exc.sw in NOT_HEALTH:
                raise NotSsc(f"SELECT DDF1 answered {exc.sw:04X}: no resident health card application") from None
            raise _card_error(exc.sw) from None
        return Ddf1Info(fci, _find_algorithm(fci))

    def _select_ef(self, file: str) -> None:
        if self._current_ef == file:
            return
        fid = self.layout.files[file].fid.to_bytes(2, "big")
        cla, ins, p1, p2 = self.layout.apdu.select_ef
        try:
            transceive(self.connection, Command(cla, ins, p1, p2, fid))
        except ApduError as exc:
            raise _card_error(exc.sw) from None
        self._current_ef = file

    # -- records ----------------------------------------------------------------------------

    def read_element(self, element: Element) -> Any:
        """One element's value; ``None`` when the card has no such record (``6A83``)."""
        spec = self.layout.files[element.file]
        le = element.max_len + self.layout.apdu.le_extra
        response = None
        if self.sfi_supported is not False:
            response = self.connection.send(Command(0x00, 0xB2, element.tag, spec.sfi << 3, le=le))
            if response.sw in SFI_REFUSED and self.sfi_supported is None:
                self.sfi_supported = False
                response = None
            elif response.ok:
                self.sfi_supported = True
        if response is None:
            self._select_ef(element.file)
            response = self.connection.send(Command(0x00, 0xB2, element.tag, 0x00, le=le))
        if response.sw == SW.RECORD_NOT_FOUND:
            return None
        if response.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
            raise AuthRequired(element.file)
        if not response.ok:
            raise _card_error(response.sw)
        return parse_record(element, response.data, self.layout.apdu.invalid_flag)

    def read_file(self, file: str) -> dict[str, Any]:
        """Every element of ``file`` the layout lists, by key (``None`` where the card has none)."""
        return {element.key: self.read_element(element) for element in self.layout.of_file(file)}

    # -- the whole read ---------------------------------------------------------------------

    def read(
        self,
        atr: bytes,
        key_service: KeyService | None = None,
        profile: Profile | None = None,
    ) -> HealthCard:
        """SELECT, EF05, then EF06 (authenticated first when a key service is given).

        All-or-nothing: an exception (CARD_REMOVED from the transport, BAD_RECORD, …) leaves no
        partial result.  Errors of the key service (PSAM_MISSING, TERMINAL_AUTH_FAILED, …)
        propagate: a configured key service that fails is a fault to report, not a reason to
        pretend none was configured.
        """
        return self.read_selected(self.select(), atr, key_service, profile)

    def read_selected(
        self,
        ddf1: Ddf1Info,
        atr: bytes,
        key_service: KeyService | None = None,
        profile: Profile | None = None,
    ) -> HealthCard:
        """:meth:`read` after SELECT DDF1 answered ``ddf1`` (the card-application seam selects first)."""
        ef05 = self.read_file("EF05")
        warnings: list[RecordWarning] = []
        card_number = ef05.get("card_number")
        if isinstance(card_number, str) and not checks.ssn_valid(card_number):
            warnings.append(
                RecordWarning(
                    "ID_NUMBER_CHECK",
                    "The card number (resident ID number) fails its check character.",
                    "卡号（居民身份证号码）校验位不正确。",
                )
            )
        authenticated_by = None
        if key_service is not None and self.layout.files["EF06"].needs_auth:
            self._authenticate(atr, ddf1, card_number, key_service, profile)
            authenticated_by = key_service.describe()
        holder: HealthCardholder | None
        try:
            holder = _holder(self.read_file("EF06"))
        except AuthRequired:
            if key_service is not None:
                raise  # authenticated and still refused: not a "no key service" case
            holder = None
            warnings.append(
                RecordWarning(
                    AuthRequired.code,
                    "The cardholder data (EF06) needs terminal authentication (a health-card PSAM); "
                    "the card number above is the resident's ID number.",
                    "持卡人信息（EF06）需要终端认证（健康卡PSAM）；上面的卡号即居民身份证号码。",
                )
            )
        known = {key: ef05.pop(key, None) for key in CARD_FIELDS}
        return HealthCard(
            atr=bytes(atr),
            cardholder=holder,
            warnings=tuple(warnings),
            authenticated_by=authenticated_by,
            extra=MappingProxyType(ef05),
            **known,
        )

    def _authenticate(
        self, atr: bytes, ddf1: Ddf1Info, card_number: object, key_service: KeyService, profile: Profile | None
    ) -> None:
        """EXTERNAL AUTHENTICATE with the health profile's key, the card's factors, and its algorithm.

        The factors' ``idcode`` and ``card_number`` parts are both the EF05 card number in ASCII for
        this card (it has no SSC-style identification code); docs/health-card.md.
        """
        from sscard.psam.auth import Authenticator
        from sscard.psam.crypto import Algorithm, CardFacts

        if not isinstance(card_number, str):
            raise BadRecord("card_number", "missing; card authentication needs it", "卡号")
        facts = CardFacts(card_number.encode("ascii"), card_number, historical_bytes(atr))
        authenticator = Authenticator(key_service, profile if profile is not None else load_auth_profile())
        authenticator.external(self.connection, facts, Algorithm.of(ddf1.algorithm))
        # EXTERNAL AUTHENTICATE is sent in DDF1 with no EF selected; nothing else changes.


def _holder(values: dict[str, Any]) -> HealthCardholder:
    known = {key: values.pop(key, None) for key in HOLDER_FIELDS}
    return HealthCardholder(extra=MappingProxyType(values), **known)


def _card_error(sw: int) -> Exception:
    if sw == SW.APPLICATION_LOCKED:
        return CardLocked()
    return CardError(sw, SW.describe(sw))


def _find_algorithm(fci: bytes) -> int:
    """The algorithm flag ``9F0C 03 86 01 xx`` inside the FCI; ``01`` (3DES) when absent.

    The social security card's convention (docs/card-reference.md); for the health card unconfirmed.
    """
    marker = fci.find(b"\x9f\x0c")
    if marker >= 0 and marker + 2 < len(fci):
        body = fci[marker + 3 : marker + 3 + fci[marker + 2]]
        if len(body) >= 3 and body[0] == 0x86 and body[1] == 0x01:
            return body[2]
    return 0x01


def read_health_card(
    connection: ApduConnection,
    atr: bytes,
    key_service: KeyService | None = None,
    *,
    layout: Layout | None = None,
    profile: Profile | None = None,
) -> HealthCard:
    """One whole read in the caller's transaction: ``HealthApplication(connection).read(...)``."""
    return HealthApplication(connection, layout).read(atr, key_service, profile)
