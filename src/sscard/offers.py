"""What the resident just showed a kiosk that runs for ever: the credentials its devices offered.

:func:`sscard.credentials.wait_for_credential` opens the serial devices for one wait.  A resident
process (``sscard serve``) cannot: it follows the QR scanner and the ID-card reader all the time,
publishing every scan and every ID card as an event, and watches the card reader with its event
monitor.  A sign-in asked for a moment later (the kiosk page reacting to the event, or a program
waiting for "any" credential) must use what the resident showed, from the service's own devices,
not a code a page claims it saw.  This inbox is where those offers wait:

* an offer is taken once (a scan signs in once) and goes stale after :data:`OFFER_MAX_AGE`;
* the first offered of the kinds asked for wins; the others stay (nothing lost);
* a card is offered when it goes in and withdrawn when it comes out.

The kinds are the sign-in methods of ``POST /v1/sign-in`` (docs/service.md): ``card``, ``qr``
(the electronic SSC), ``evoucher`` (the medical insurance e-voucher) and ``idcard``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sscard.credentials import Credential, CredentialKind
from sscard.errors import Timeout

#: Seconds an offer counts for a sign-in (a resident who scanned and walked away is not signed in
#: by the next one's request).
OFFER_MAX_AGE = 60.0

#: The sign-in method a QR code's kind gives (docs/card-reference.md §9); other kinds sign nobody in.
QR_METHODS = {"electronic_ssc": "qr", "medical_insurance_evoucher": "evoucher"}
METHODS = ("card", "qr", "evoucher", "idcard")


def method_of(credential: Credential) -> str | None:
    """The sign-in method a credential offers, or None (an unknown QR code, say)."""
    if credential.kind is CredentialKind.SSC_CARD:
        return "card"
    if credential.kind is CredentialKind.ID_CARD:
        return "idcard"
    if credential.qr is not None:
        return QR_METHODS.get(credential.qr.kind.value)
    return None


@dataclass(frozen=True)
class Offer:
    """One credential offered: its method, the device, when (monotonic), and the credential itself
    (None for a card, which is read when it is signed in with)."""

    method: str
    source: str
    at: float
    credential: Credential | None = field(default=None, repr=False)


class CredentialInbox:
    """The offers of a resident process's devices, for the next sign-in to take (thread-safe)."""

    def __init__(self, max_age: float = OFFER_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._offers: list[Offer] = []
        self._changed = threading.Condition()

    def offer(self, method: str, source: str, credential: Credential | None = None) -> None:
        """A credential was offered; a second card offer from the same reader replaces the first."""
        if method not in METHODS:
            raise ValueError(f"unknown sign-in method {method!r}")
        with self._changed:
            if method == "card":
                self._offers = [o for o in self._offers if not (o.method == "card" and o.source == source)]
            self._offers.append(Offer(method, source, self._clock(), credential))
            self._changed.notify_all()

    def offer_credential(self, credential: Credential) -> bool:
        """Offer a QR code or ID card read by a device; False for one that signs nobody in."""
        method = method_of(credential)
        if method is None:
            return False
        self.offer(method, credential.source, credential)
        return True

    def withdraw(self, method: str, source: str | None = None) -> None:
        """The credential went away (a card came out): it can no longer be signed in with."""
        with self._changed:
            self._offers = [
                o for o in self._offers if not (o.method == method and (source is None or o.source == source))
            ]

    def pending(self) -> list[Offer]:
        """The offers that still count, oldest first."""
        with self._changed:
            self._expire()
            return list(self._offers)

    def take(self, methods: Collection[str], timeout: float, *, cancelled: Callable[[], bool] | None = None) -> Offer:
        """The first offer of one of ``methods``, waiting up to ``timeout`` s for one; it is removed.

        :class:`~sscard.errors.Timeout` when none came.  ``cancelled`` is asked every 0.2 s, so a
        waiting request whose client left stops waiting.
        """
        deadline = self._clock() + timeout
        with self._changed:
            while True:
                self._expire()
                for offer in self._offers:
                    if offer.method in methods:
                        self._offers.remove(offer)
                        return offer
                remaining = deadline - self._clock()
                if remaining <= 0 or (cancelled is not None and cancelled()):
                    raise Timeout(
                        "a credential", f"none of {', '.join(methods)} within {timeout:g} s", what_zh="刷卡或扫码"
                    )
                self._changed.wait(min(remaining, 0.2))

    def clear(self) -> None:
        with self._changed:
            self._offers.clear()

    def _expire(self) -> None:
        oldest = self._clock() - self.max_age
        self._offers = [o for o in self._offers if o.at >= oldest]
