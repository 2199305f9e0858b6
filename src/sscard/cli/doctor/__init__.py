"""``sscard doctor``: one command that says what is wrong with a kiosk and what to do, in Chinese and English.

The checks are a table in :mod:`sscard.cli.doctor.checks`, imported only when the command runs
(start-up, tests/test_cli_startup.py); this module renders their findings for a technician (text,
one block per check) or for a fleet agent (``--json``).  Exit code: 0 all fine, 1 warnings (no
card, no service configured…), 2 faults (pcscd down, no reader, permission denied…) — docs/cli.md
and docs/doctor.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sscard.cli.util import Context

if TYPE_CHECKING:
    import argparse

    from sscard.cli.doctor.findings import Finding
    from sscard.cli.options import Builder

#: How each status is labelled in the text form.
LABELS = {"ok": "正常 OK", "skipped": "跳过 SKIP", "warning": "警告 WARN", "fault": "故障 FAULT"}


def render(findings: list[Finding], exit_code: int) -> str:
    """The technician's form: per check its label, the Chinese and the English verdict, then the fix."""
    width = max(len(label) for label in LABELS.values())
    lines = ["sscard doctor：现场诊断 / field diagnosis", ""]
    for finding in findings:
        lines.append(f"[{LABELS[finding.status.value]:<{width}}] {finding.check}")
        lines.append(f"    {finding.zh}")
        lines.append(f"    {finding.en}")
        if finding.fix_en:
            lines.append(f"    处理：{finding.fix_zh}")
            lines.append(f"    fix: {finding.fix_en}")
    faults = sum(f.status.value == "fault" for f in findings)
    warnings = sum(f.status.value == "warning" for f in findings)
    if faults or warnings:
        zh = f"结论：{faults}项故障，{warnings}项警告"
        en = f"verdict: {faults} fault{'s' * (faults != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    else:
        zh, en = "结论：一切正常", "verdict: all fine"
    lines += ["", f"{zh} / {en} (exit {exit_code})"]
    return "\n".join(lines)


def cmd_doctor(ctx: Context) -> int:
    import json

    from sscard.cli.doctor.checks import EXIT, Probe, run_checks, worst

    extra: dict[str, Any] = {}
    if ctx.args.user:
        extra["user"] = ctx.args.user
    probe = Probe(config=ctx.config, port=ctx.args.port, socket_path=ctx.args.socket, **extra)
    findings = run_checks(probe)
    status = worst(findings)
    code = EXIT[status]
    if ctx.json:
        payload = {"status": status.value, "exit_code": code, "checks": [f.to_json() for f in findings]}
        print(json.dumps(payload, ensure_ascii=False), file=ctx.out)
    else:
        print(render(findings, code), file=ctx.out)
    return code


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt, reader_opt

    def doctor_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", type=int, help="the service's port (default [service] port, 8765)")
        p.add_argument("--socket", metavar="PATH", help="the national-interface socket (default [service] socket)")
        p.add_argument("--user", help="the kiosk user whose permissions to check (default: SUDO_USER or you)")

    b.command(sub, name, text, cmd_doctor, b.options(reader_opt, json_opt), doctor_build)
