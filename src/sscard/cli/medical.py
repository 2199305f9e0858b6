"""Hospital front desks (docs/medical.md): ``medical credential``.

Waits in process, like ``read``, for whichever credential comes first — the card in the reader,
a scan of the ``[qr]`` scanner, a card on the ``[idcard]`` reader — and prints the medical
insurance platform's person-query fields as top-level keys (``--json``) or as a table.
With ``[medical] card_passtype = "1"`` an SSC's PIN is asked for (hidden prompt or
``--pin-stdin``) once the card is there and known not to be blocked, and verified once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sscard.cli.util import EXIT_OK, Context, label_rows
from sscard.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder
    from sscard.medical import MedicalCredential

log = logging.getLogger("sscard.cli.medical")

#: How long ``medical credential`` waits for a credential unless ``--timeout`` says otherwise.
DEFAULT_TIMEOUT_S = 60.0

_LABELS = (
    ("mdtrt_cert_type", "就诊凭证类型", "Credential type"),
    ("mdtrt_cert_no", "就诊凭证编号", "Credential number"),
    ("card_sn", "卡识别码", "Card ID code"),
    ("psn_cert_type", "人员证件类型", "Person's document type"),
    ("certno", "证件号码", "Document number"),
    ("psn_name", "人员姓名", "Name"),
)
_KINDS = {"03": "社会保障卡 SSC", "02": "居民身份证 ID card", "01": "医保电子凭证 e-voucher"}


def render_medical(found: MedicalCredential) -> str:
    """The readable, bilingual form of the ``--json`` contract."""
    data = found.fields()
    rows: list[tuple[str, str, object]] = []
    for key, zh, en in _LABELS:
        value = data[key] or "-"
        if key == "mdtrt_cert_type":
            value = f"{value} ({_KINDS.get(data[key], '?')})"
        rows.append((zh, en, value))
    lines = [f"医保就诊凭证 Medical insurance credential  [{found.credential.source}]", *label_rows(rows)]
    if not found.resolved:
        lines.append("  ! 电子凭证未经医保平台解析（未配置 [medical] ec_url）：编号为扫码原文")
        lines.append("    e-voucher not resolved (no [medical] ec_url): the number is the scanned code")
    return "\n".join(lines)


def cmd_medical_credential(ctx: Context) -> int:
    from sscard.medical import medical_credential, pin_verifier, resolver_from_config

    timeout = ctx.args.timeout
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be positive", "--timeout必须大于0")
    config = ctx.config
    resolver = resolver_from_config(config)  # a bad ec_url is CONFIG_ERROR before anything waits
    verify = pin_verifier(lambda: ctx.read_pin("PIN 密码: ")) if config.medical_card_passtype == "1" else None
    if verify is None and ctx.args.pin_stdin:
        log.warning("--pin-stdin given but [medical] card_passtype is not 1: no PIN is verified")
    with ctx.open_terminal() as terminal:
        found = medical_credential(
            terminal,
            DEFAULT_TIMEOUT_S if timeout is None else timeout,
            resolver=resolver,
            verify_pin=verify,
            on_event=lambda event: log.info("%s %s", event.kind.value, event.reader),
        )
    ctx.emit(found.to_json(), render_medical(found))
    return EXIT_OK


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt, pin_opts, reader_opt

    def medical_commands(p: argparse.ArgumentParser) -> None:
        medical_sub = p.add_subparsers(dest="medical_command", required=True, metavar="MEDICAL_COMMAND")
        q = b.command(
            medical_sub,
            "credential",
            "wait for an SSC, ID card or e-voucher QR code; print the platform's person-query fields"
            " / 等待社保卡、身份证或医保电子凭证，输出医保平台人员查询的字段",
            cmd_medical_credential,
            b.options(reader_opt, json_opt, pin_opts),
        )
        q.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help=f"wait up to SECONDS for a credential (default {DEFAULT_TIMEOUT_S:g})",
        )

    b.command(sub, name, text, None, build=medical_commands)
