"""Hospital front desks: one call that waits for whatever credential the patient has — the social
security card, the resident ID card, the medical insurance e-voucher QR code — and returns the
input fields of the national medical insurance platform's person query (transaction 1101):
``mdtrt_cert_type``, ``mdtrt_cert_no``, ``card_sn``, ``psn_cert_type``, ``certno``, ``psn_name``
(docs/medical.md, docs/card-reference.md §7).

    from sscard.medical import medical_credential, pin_verifier, resolver_from_config
    from sscard.terminal import Terminal

    with Terminal.open() as terminal:                        # [qr] and [idcard] ports from the configuration
        found = medical_credential(terminal, timeout=60, resolver=resolver_from_config(terminal.config))
        his.person_query(**found.fields())                   # the six platform fields, all strings

A front end (layer 5, like :mod:`sscard.national`): it builds on the terminal and
:mod:`sscard.credentials` and is imported by the CLI, the service and the native socket, never the
other way round.

* **SSC** → ``03``, the social security number, the card's 卡识别码 as ``card_sn``.  When the
  caller gives ``verify_pin`` (``[medical] card_passtype = "1"``), it is called with the terminal
  while the card is in the reader, once; :func:`pin_verifier` makes one from a PIN or a callable
  that asks for it.  The PIN is never retried and is wiped afterwards.
* **ID card** → ``02``, the ID number as ``mdtrt_cert_no`` and ``certno``.
* **E-voucher** → ``01``.  With a ``resolver`` (:class:`HttpEcResolver`, ``[medical] ec_url``) the
  platform's ecToken is ``mdtrt_cert_no`` and the person's ID number, type and name fill the rest;
  without one ``mdtrt_cert_no`` is the raw scanned code, the person's fields are ``""`` and
  ``resolved`` is False: the HIS must resolve the code itself.  Another QR code (an electronic
  SSC, a payment code) is :class:`~sscard.errors.ScanRejected` with reason ``not_medical_evoucher``.

``psn_cert_type`` for an SSC or an ID card is the platform's code for 居民身份证, which is
**unconfirmed** (``[medical] psn_cert_type``, default from ``medical/data/platform.toml``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sscard.credentials import Credential, CredentialKind
from sscard.errors import BadRecord, PinBlocked, ScanRejected
from sscard.medical.ec import (
    EcPerson,
    EcRequest,
    EcResolver,
    HttpEcResolver,
    Signer,
    decode_answer,
    resolver_from_config,
)
from sscard.medical.platform import platform_data
from sscard.ssc.pin import Pin

if TYPE_CHECKING:
    from sscard.events import Event
    from sscard.terminal import PinSource, Terminal

#: The stable ``reason`` of the ScanRejected raised for a QR code that is not an e-voucher.
REASON_NOT_EVOUCHER = "not_medical_evoucher"

#: The six input fields of the platform's person query, in the platform's order.
FIELDS = ("mdtrt_cert_type", "mdtrt_cert_no", "card_sn", "psn_cert_type", "certno", "psn_name")


def cert_type(name: str) -> str:
    """The platform's ``mdtrt_cert_type`` for ``ssc``, ``id_number`` or ``e_voucher``."""
    value: str = platform_data()["mdtrt_cert_type"][name]
    return value


@dataclass(frozen=True)
class MedicalCredential:
    """One patient's credential as the platform's person query takes it.

    Every field is a string (``""`` when the credential has none).  ``resolved`` is False only for
    an e-voucher that was not resolved (no resolver): ``mdtrt_cert_no`` then holds the raw scanned
    code, not an ecToken, and ``psn_cert_type``, ``certno`` and ``psn_name`` are ``""``.
    Personal data is out of ``repr`` (PIPL).
    """

    mdtrt_cert_type: str
    mdtrt_cert_no: str = field(repr=False)
    card_sn: str
    psn_cert_type: str
    certno: str = field(repr=False)
    psn_name: str = field(repr=False)
    resolved: bool
    credential: Credential = field(repr=False)
    #: The platform's answer for a resolved e-voucher, None otherwise.
    person: EcPerson | None = field(default=None, repr=False, compare=False)

    def fields(self) -> dict[str, str]:
        """The platform's six input fields (:data:`FIELDS`), top-level string keys, nothing else:
        ready to go into the person query as they are.  ``resolved`` is not among them (it is not
        a platform field): it is in :meth:`to_json`."""
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self) -> dict[str, Any]:
        """The contract of ``sscard medical credential --json`` and ``POST /v1/medical/credential``:
        the six fields, ``resolved`` (a JSON boolean) and ``kind`` (the credential's kind:
        ``ssc_card``, ``id_card``, ``qr``)."""
        return {**self.fields(), "resolved": self.resolved, "kind": self.credential.kind.value}


def pin_verifier(pin: PinSource) -> Callable[[Terminal], None]:
    """A ``verify_pin`` for :func:`medical_credential`: verify ``pin`` (or what the callable
    returns, asked for only when an SSC is in the reader and its PIN is not blocked: one tries-left
    query first) once; PIN_INCORRECT / PIN_BLOCKED raised.

    The PIN is wiped when the verify returns or raises (a :class:`~sscard.ssc.pin.Pin` or
    ``bytearray``; a ``str`` cannot be).  A caller that passes a Pin wipes it itself when no SSC
    came (``with pin:``), since then this is never called.
    """

    def verify(terminal: Terminal) -> None:
        from sscard.ssc.application import PinState

        terminal.check_pin_allowed()  # before the PIN is asked for
        if callable(pin) and terminal.pin_status().state is PinState.BLOCKED:
            raise PinBlocked("the tries-left query says so; no PIN asked for")
        secret = Pin.of(pin() if callable(pin) else pin)
        terminal.verify(secret).raise_for_error()  # wipes it, whatever happens

    return verify


def _resident_cert_type(terminal: Terminal) -> str:
    return terminal.config.medical_psn_cert_type or str(platform_data()["psn_cert_type"]["resident_id"])


def medical_credential(
    terminal: Terminal,
    timeout: float | None = None,
    *,
    card: bool = True,
    qr: bool = True,
    idcard: bool = True,
    resolver: EcResolver | None = None,
    verify_pin: Callable[[Terminal], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> MedicalCredential:
    """Wait for the first credential at ``terminal`` (:meth:`Terminal.wait_for_credential`: the card
    reader, ``[qr] port``, ``[idcard] port``) and return the platform's fields for it.

    ``timeout`` bounds the wait for a credential (TIMEOUT); the resolver has its own
    (``[medical] timeout``), and PIN entry is the caller's.  ``resolver`` None leaves an e-voucher
    unresolved.  Errors: the wait's and the card's (NO_CARD, NOT_SSC, …), PIN_INCORRECT /
    PIN_BLOCKED from ``verify_pin``, SCAN_REJECTED for a QR code that is not an e-voucher, and
    the resolver's EC_UNREACHABLE / EC_REFUSED / EC_BAD_ANSWER.
    """
    found = terminal.wait_for_credential(timeout, card=card, qr=qr, idcard=idcard, on_event=on_event)
    return credential_fields(terminal, found, resolver=resolver, verify_pin=verify_pin)


def credential_fields(
    terminal: Terminal,
    found: Credential,
    *,
    resolver: EcResolver | None = None,
    verify_pin: Callable[[Terminal], None] | None = None,
) -> MedicalCredential:
    """The platform's fields for a credential already waited for (the second half of
    :func:`medical_credential`, for callers that wait themselves)."""
    if found.kind is CredentialKind.SSC_CARD and found.card is not None:
        read = found.card
        ssn = read.cardholder.ssn
        if not ssn:
            raise BadRecord("ssn", "missing; the platform's person query needs it", "社会保障号码")
        if verify_pin is not None:
            verify_pin(terminal)
        code = read.issuer.identification_code
        return MedicalCredential(
            mdtrt_cert_type=cert_type("ssc"),
            mdtrt_cert_no=ssn,
            card_sn=code.hex if code is not None else "",
            psn_cert_type=_resident_cert_type(terminal),
            certno=ssn,
            psn_name=read.cardholder.full_name or "",
            resolved=True,
            credential=found,
        )
    if found.kind is CredentialKind.ID_CARD and found.id_card is not None:
        record = found.id_card
        return MedicalCredential(
            mdtrt_cert_type=cert_type("id_number"),
            mdtrt_cert_no=record.id_number,
            card_sn="",
            psn_cert_type=_resident_cert_type(terminal),
            certno=record.id_number,
            psn_name=record.name,
            resolved=True,
            credential=found,
        )
    if found.kind is CredentialKind.QR and found.qr is not None:
        from sscard.qr import QrKind

        scanned = found.qr
        if scanned.kind is not QrKind.MEDICAL_INSURANCE_EVOUCHER:
            raise ScanRejected(REASON_NOT_EVOUCHER, f"a {scanned.kind.value} code, not a medical insurance e-voucher")
        if resolver is None:
            return MedicalCredential(
                mdtrt_cert_type=cert_type("e_voucher"),
                mdtrt_cert_no=scanned.code,
                card_sn="",
                psn_cert_type="",
                certno="",
                psn_name="",
                resolved=False,
                credential=found,
            )
        person = resolver.resolve(scanned.code)
        return MedicalCredential(
            mdtrt_cert_type=cert_type("e_voucher"),
            mdtrt_cert_no=person.ec_token,
            card_sn="",
            psn_cert_type=person.id_type or _resident_cert_type(terminal),
            certno=person.id_no,
            psn_name=person.user_name,
            resolved=True,
            credential=found,
            person=person,
        )
    raise ValueError(f"a credential of kind {found.kind.value} without its content")


__all__ = [
    "FIELDS",
    "REASON_NOT_EVOUCHER",
    "EcPerson",
    "EcRequest",
    "EcResolver",
    "HttpEcResolver",
    "MedicalCredential",
    "Signer",
    "cert_type",
    "credential_fields",
    "decode_answer",
    "medical_credential",
    "pin_verifier",
    "resolver_from_config",
]
