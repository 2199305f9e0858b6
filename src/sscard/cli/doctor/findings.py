"""What ``sscard doctor``'s checks find and what they look at: :class:`Finding`, :class:`Status`, :class:`Probe`.

What the checks touch is in :class:`Probe`: the configuration, the kiosk user, and a few
functions over the machine (processes, files, groups, the clock) that the tests replace with
fakes where a fault cannot be made real here (a missing polkit rule, an unsynchronised clock).
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscard.config import Config
from sscard.errors import SscardError

#: The files ``sscard install-rules`` installs (sscard.cli.service.RULES_FILES), by what they give.
UDEV_RULES = ("etc/udev/rules.d/60-sscard-ccid.rules", "etc/udev/rules.d/61-sscard-serial.rules")
POLKIT_RULE = "etc/polkit-1/rules.d/50-sscard-pcscd.rules"
KIOSK_GROUP = "sscard"
PCSCD_SOCKET = "run/pcscd/pcscd.comm"
#: Seconds each network probe of the service may take.
PROBE_TIMEOUT = 2.0


class Status(str, enum.Enum):
    """A check's outcome; the worst one decides the exit code (:data:`EXIT`)."""

    OK = "ok"
    SKIPPED = "skipped"  # not configured, or not checkable after an earlier fault
    WARNING = "warning"
    FAULT = "fault"


#: Exit code by the worst status: 0 all fine, 1 warnings, 2 faults (docs/cli.md "sscard doctor").
EXIT = {Status.OK: 0, Status.SKIPPED: 0, Status.WARNING: 1, Status.FAULT: 2}
_RANK = {Status.OK: 0, Status.SKIPPED: 0, Status.WARNING: 1, Status.FAULT: 2}


@dataclass(frozen=True)
class Finding:
    """One verdict: what was found and, unless all is well, what to do — in English and Chinese."""

    check: str
    status: Status
    en: str
    zh: str
    fix_en: str = ""
    fix_zh: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status.value,
            "verdict": {"en": self.en, "zh": self.zh},
            "fix": {"en": self.fix_en, "zh": self.fix_zh} if self.fix_en else None,
            "details": self.details,
        }


def _pcscd_pids(root: Path) -> list[int]:
    """PIDs of processes named pcscd (``/proc/*/comm``)."""
    pids = []
    for comm in (root / "proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text(encoding="ascii", errors="replace").strip() == "pcscd":
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return sorted(pids)


def _pcscd_features() -> str | None:
    """``pcscd --version``'s text (it names ``polkit`` among its features when built with it)."""
    path = shutil.which("pcscd") or "/usr/sbin/pcscd"
    try:
        run = subprocess.run(  # noqa: S603 - pcscd itself, found on PATH or where Debian installs it
            [path, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout + run.stderr


def _group_members(name: str) -> list[str] | None:
    """The members of group ``name`` (secondary members and those whose primary group it is), None if absent."""
    import grp
    import pwd

    try:
        group = grp.getgrnam(name)
    except KeyError:
        return None
    primary = [user.pw_name for user in pwd.getpwall() if user.pw_gid == group.gr_gid]
    return sorted({*group.gr_mem, *primary})


def _ntp_synchronized() -> bool | None:
    """Whether the clock is NTP-synchronised: systemd-timesyncd's flag file, else timedatectl; None unknown."""
    if Path("/run/systemd/timesync/synchronized").exists():
        return True
    try:
        run = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    answer = run.stdout.strip()
    return {"yes": True, "no": False}.get(answer)


def _installed_at() -> float:
    """When this sscard was installed (its package's ``__init__.py``): a clock before it is certainly wrong."""
    return Path(__file__).resolve().parents[2].joinpath("__init__.py").stat().st_mtime


def _default_user() -> str:
    """The kiosk user to check: whoever ran ``sudo sscard doctor``, else this process's user."""
    import getpass

    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return str(os.geteuid())


@dataclass
class Probe:
    """What the checks look at; every function may be replaced by a test's fake (tests/test_doctor.py)."""

    config: Config
    user: str = field(default_factory=_default_user)
    port: int | None = None  # --port
    socket_path: str | None = None  # --socket
    root: Path = Path("/")
    which: Callable[[str], str | None] = shutil.which
    pcscd_pids: Callable[[Path], list[int]] = _pcscd_pids
    pcscd_features: Callable[[], str | None] = _pcscd_features
    group_members: Callable[[str], list[str] | None] = _group_members
    ntp_synchronized: Callable[[], bool | None] = _ntp_synchronized
    now: Callable[[], float] = time.time
    installed_at: Callable[[], float] = _installed_at
    #: What earlier checks found, for the later ones.
    pcscd_error: SscardError | None = None
    readers: list[str] | None = None
    card_reader: Any = None  # the Reader holding a card (check_card), for check_ssc


def not_checked(check: str, why_en: str, why_zh: str) -> Finding:
    return Finding(check, Status.SKIPPED, f"not checked: {why_en}", f"未检查：{why_zh}")


def worst(findings: Sequence[Finding]) -> Status:
    return max((f.status for f in findings), key=_RANK.__getitem__, default=Status.OK)
