"""``sscard doctor``'s checks: one small function each, in :data:`CHECKS`, run in that order.

Why a table: a field technician reads the verdicts top-down, from the bottom of the stack (is
pcscd there at all) to the top (does the service answer, is the clock right for tokens), and a
fleet agent reads the same list as JSON; a new check is one function and one entry.  Each check
returns its :class:`Finding` (a few return one per device), with the verdict and the fix in
English and in Chinese (wholly Chinese: names, paths and commands only, tests/test_doctor.py).

The findings and the :class:`Probe` the checks look at are in :mod:`.findings`; the checks from
pcscd to the PSAM in :mod:`.pcsc`, those of the serial devices, the service and the clock in
:mod:`.host`.

Imported only by ``sscard doctor`` (tests/test_cli_startup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sscard.cli.doctor.findings import EXIT, Finding, Probe, Status, worst
from sscard.cli.doctor.host import check_clock, check_serial, check_service_port, check_service_socket
from sscard.cli.doctor.pcsc import (
    check_card,
    check_pcscd_answering,
    check_pcscd_installed,
    check_pcscd_running,
    check_permission,
    check_psam,
    check_readers,
    check_ssc,
)

__all__ = ["CHECKS", "EXIT", "Finding", "Probe", "Status", "run_checks", "worst"]

Check = Callable[[Probe], "Finding | list[Finding]"]
#: The checks in the order item 4 of issue 15 lists them; a new check is one entry.
CHECKS: Sequence[Check] = (
    check_pcscd_installed,
    check_pcscd_running,
    check_pcscd_answering,
    check_readers,
    check_permission,
    check_card,
    check_ssc,
    check_psam,
    check_serial,
    check_service_port,
    check_service_socket,
    check_clock,
)


def run_checks(probe: Probe, checks: Sequence[Check] = CHECKS) -> list[Finding]:
    """Every check in order; a check that fails unexpectedly is a fault of its own, not the end."""
    findings: list[Finding] = []
    for check in checks:
        try:
            result = check(probe)
        except Exception as exc:  # a bug or an unforeseen state: say so and go on
            name = check.__name__.removeprefix("check_")
            result = Finding(name, Status.FAULT, f"the check failed: {type(exc).__name__}: {exc}", "检查本身出错")
        findings += result if isinstance(result, list) else [result]
    return findings
