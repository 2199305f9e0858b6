"""Who watches the terminal's card operations: the seam the service's metrics and readiness use.

Every card operation of the facade (``read``, ``verify``, ``sign_in`` …) is one method decorated
with :func:`observed`; the terminal's ``observer`` (None by default: the CLI has none) is told
when each starts and how it ended.  The observation is here, at the operations themselves, and
not in a front end, so that every caller is counted alike — the HTTP routes, the vendor-bridge
WebSocket, the national-interface socket (whose calls turn errors into return codes *after* the
facade raised them, so only here is the typed error still seen) — and a new route or socket
call cannot forget it.

An operation called by another (``sign_in`` reads the card and verifies the PIN) is reported as
``nested``: an observer counting what clients asked for counts the outer one only, while one
counting PIN outcomes still sees the inner ``verify``.  The observer is called on the operation's
own thread and must not block; what it is given never contains a PIN (the result of a PIN
operation is a :class:`~sscard.ssc.application.PinOutcome`: a state and the tries left).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast


class OperationObserver(Protocol):
    """What the terminal tells about each card operation (the service's metrics are one)."""

    def started(self, operation: str, nested: bool) -> None:
        """``operation`` (the method's name) begins on this thread."""

    def finished(
        self, operation: str, nested: bool, seconds: float, result: object, error: BaseException | None
    ) -> None:
        """It ended after ``seconds``: returned ``result`` (``error`` None) or raised ``error``."""


class Observed(Protocol):
    """A terminal: anything with an ``observer`` attribute."""

    observer: OperationObserver | None


log = logging.getLogger("sscard.terminal")

_F = TypeVar("_F", bound=Callable[..., Any])

#: How many observed operations are running on this thread (an operation calling another).
_depth = threading.local()


def observed(operation: str) -> Callable[[_F], _F]:
    """Report each call of the decorated terminal method to the terminal's ``observer`` as ``operation``.

    (Typed as returning the method unchanged, so the overloads of ``read`` keep their types.)
    """

    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def run(self: Observed, *args: Any, **kwargs: Any) -> Any:
            observer = self.observer
            if observer is None:
                return method(self, *args, **kwargs)
            depth: int = getattr(_depth, "value", 0)
            nested = depth > 0
            _tell(observer.started, operation, nested)
            _depth.value = depth + 1
            began = time.perf_counter()
            try:
                result = method(self, *args, **kwargs)
            except BaseException as exc:
                _depth.value = depth
                _tell(observer.finished, operation, nested, time.perf_counter() - began, None, exc)
                raise
            _depth.value = depth
            _tell(observer.finished, operation, nested, time.perf_counter() - began, result, None)
            return result

        return cast(_F, run)

    return decorate


def _tell(call: Callable[..., None], *args: object) -> None:
    """An observer's failure is logged, never the card operation's: a read must not fail for a metric."""
    try:
        call(*args)
    except Exception:
        log.exception("operation observer failed")
