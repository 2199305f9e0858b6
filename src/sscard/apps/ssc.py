"""The social security card through the card-application seam: ``CardRead`` and its read.

The read itself is the one ``Terminal.read`` has always done (docs/architecture.md, "Card
authentication and sign-in"): SELECT SSSE (which is also the recognition, so an SSC costs no extra
APDU), EF05, external authentication first on a 3rd-generation card when a key service is
configured, EF06, internal authentication when asked, the record checks.  It moved here from the
facade so that the facade asks the registry instead of building :class:`SscApplication` itself;
``sscard.terminal`` re-exports :class:`CardRead`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sscard.apdu.atr import historical_bytes
from sscard.errors import AuthRequired, BadRecord
from sscard.ssc.application import SscApplication, SsseInfo
from sscard.ssc.records import CardholderData, IssuerData, RecordWarning, validate

if TYPE_CHECKING:
    from sscard.cardapp import ReadContext
    from sscard.psam.crypto import Algorithm, CardFacts

#: The EF06 elements a locked 3rd-generation card withholds (docs/card-reference.md §1, §3).
LOCKED_EF06 = ("ssn", "name", "gender", "nation", "birthplace", "birth_date")


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def card_keys(atr: bytes, ssse: SsseInfo, issuer: IssuerData) -> tuple[CardFacts, Algorithm]:
    """What authentication needs of the card: the data its factors are built from, and its
    algorithm (docs/card-auth.md).  Only asked for when a card is authenticated, so a plain read
    neither refuses an unknown algorithm flag nor needs an identification code."""
    from sscard.psam.crypto import Algorithm, CardFacts

    if issuer.identification_code is None:
        raise BadRecord("identification_code", "missing; card authentication needs it", "卡识别码")
    facts = CardFacts(issuer.identification_code.raw, issuer.card_number or "", historical_bytes(atr))
    return facts, Algorithm.of(ssse.algorithm)


@dataclass(frozen=True)
class CardRead:
    """Everything an SSC read learnt: card (EF05), cardholder (EF06), and warnings.

    ``locked_elements`` lists the EF06 elements a 3rd-generation card refused without terminal
    authentication; it is empty on a complete read.
    """

    reader: str
    atr: bytes
    ssse: SsseInfo
    issuer: IssuerData
    cardholder: CardholderData
    warnings: tuple[RecordWarning, ...] = ()
    locked_elements: tuple[str, ...] = field(default=())
    #: The key service that proved the card genuine (internal authentication), if one did.
    authenticated_by: str | None = None

    kind: ClassVar[str] = "ssc"

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``sscard read --json`` (docs/cli.md); keys never change meaning."""
        issuer, holder = self.issuer, self.cardholder
        out: dict[str, Any] = {
            "kind": self.kind,
            "card": {
                "identification_code": issuer.identification_code.hex if issuer.identification_code else None,
                "type": issuer.card_type,
                "spec_version": issuer.spec_version,
                "issuer_id": issuer.issuer_id,
                "issue_date": _iso(issuer.issue_date),
                "expiry_date": _iso(issuer.expiry_date),
                "card_number": issuer.card_number,
                "region_code": issuer.region_code,
                "atr": self.atr.hex().upper(),
            },
            "cardholder": {
                "ssn": holder.ssn,
                "name": holder.full_name,
                "gender_code": holder.gender_code,
                "gender": holder.gender,
                "nation_code": holder.nation_code,
                "nation": holder.nation,
                "birthplace_code": holder.birthplace_code,
                "birth_date": _iso(holder.birth_date),
            },
            "warnings": [w.to_dict() for w in self.warnings],
        }
        if self.authenticated_by is not None:  # only when asked for: the keys above stay the contract
            out["authenticated_by"] = self.authenticated_by
        return out


class SscCardApp:
    """The SSSE application (docs/card-reference.md §1–§5) as a :class:`~sscard.cardapp.CardApplication`."""

    def __init__(self, context: ReadContext) -> None:
        self.context = context
        self.app = SscApplication(context.connection)
        self._ssse: SsseInfo | None = None

    def select(self) -> None:
        """SELECT SSSE; ``6A82`` (and its kin) is NOT_SSC, the seam's "not here"."""
        self._ssse = self.app.select()

    def read(self) -> CardRead:
        """EF05 and EF06 with the fewest APDUs the card allows (``Terminal.read``'s docstring)."""
        context, app, ssse = self.context, self.app, self._ssse
        assert ssse is not None, "select() first"
        options = context.options
        issuer = app.read_issuer()
        locked: tuple[str, ...] = ()
        authenticator = context.authenticator() if context.keys_configured else None
        keys = card_keys(context.atr, ssse, issuer) if authenticator is not None or options.authenticate else None
        unlocked = False
        if authenticator is not None and keys is not None and (issuer.spec_version or "").startswith("3"):
            authenticator.external(app.connection, *keys)  # 3rd gen: unlock first
            unlocked = True
        try:
            holder = app.read_cardholder(issuer.spec_version)
        except AuthRequired as exc:
            if authenticator is not None and keys is not None and not unlocked:
                authenticator.external(app.connection, *keys)
                holder = app.read_cardholder(issuer.spec_version)
            elif options.require_cardholder:
                raise AuthRequired("cardholder data (EF06)", exc.detail, element_zh="持卡人数据（EF06）") from None
            else:
                holder, locked = CardholderData(), LOCKED_EF06
        authenticated_by = None
        if options.authenticate and keys is not None:
            authenticator = authenticator or context.authenticator()
            authenticator.internal(app.connection, *keys)
            authenticated_by = authenticator.service.describe()
        warnings = validate(issuer, None if locked else holder, options.today or dt.date.today())
        if locked:
            warnings.append(
                RecordWarning(
                    "AUTH_REQUIRED",
                    "Cardholder data needs terminal authentication (PSAM or HSM): " + ", ".join(locked),
                    "持卡人信息需要终端认证（PSAM或加密机）后才能读取。",
                )
            )
        return CardRead(context.reader, context.atr, ssse, issuer, holder, tuple(warnings), locked, authenticated_by)
