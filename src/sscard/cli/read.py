"""``sscard read``: the card and cardholder, as text, JSON or the national string; the photo; the HSM two-step.

Also the argparse-free fast path of a plain ``sscard read …`` (:func:`fast_read_args`, with the
table of read's options it knows, :data:`READ_OPTIONS`) and the readable rendering of a card
(:func:`render_card`), which ``demo``, ``record`` and ``replay`` use too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sscard.cardapp import APPLICATIONS
from sscard.cli.util import EXIT_OK, READ_FORMATS, Context, isatty, label_rows, warning_lines
from sscard.errors import OtherApplication, UsageError
from sscard.logfmt import LOG_FORMATS

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder

# Bilingual labels for the readable card.
_CARD_LABELS = (
    ("card_number", "卡号", "Card number"),
    ("identification_code", "卡识别码", "Card identification code"),
    ("type", "卡类别", "Card type"),
    ("spec_version", "规范版本", "Spec version"),
    ("issuer_id", "初始化机构编号", "Initialising organisation"),
    ("region_code", "区号", "Region code"),
    ("issue_date", "发卡日期", "Issue date"),
    ("expiry_date", "卡有效期", "Expiry date"),
    ("atr", "复位信息", "ATR"),
)
_HOLDER_LABELS = (
    ("name", "姓名", "Name"),
    ("ssn", "社会保障号码", "Social security number"),
    ("gender", "性别", "Gender"),
    ("nation", "民族", "Nation"),
    ("birth_date", "出生日期", "Birth date"),
    ("birthplace_code", "出生地", "Birthplace code"),
)
# The bank application's (its JSON keys; the PAN is the masked one the JSON has).
_BANK_LABELS = (
    ("pan", "银行卡号", "Card number (PAN)"),
    ("expiry", "有效期", "Expiry date"),
    ("cardholder_name", "持卡人姓名", "Cardholder name"),
    ("label", "应用标签", "Application label"),
    ("preferred_name", "应用首选名称", "Preferred name"),
    ("aid", "应用标识符", "AID"),
)
# The resident health card's: its card number is the resident's ID number.
_HEALTH_HOLDER_LABELS = (
    ("name", "姓名", "Name"),
    ("gender", "性别", "Gender"),
    ("nation", "民族", "Nation"),
    ("birth_date", "出生日期", "Birth date"),
)
_HEALTH_CARD_LABELS = (
    ("card_number", "卡号（身份证号码）", "Card number (ID number)"),
    ("card_type", "卡类别", "Card type"),
    ("version", "规范版本", "Version"),
    ("issuer_name", "发卡机构", "Issuer"),
    ("issue_date", "发卡日期", "Issue date"),
    ("city_code", "城市代码", "City code"),
    ("atr", "复位信息", "ATR"),
)


def render_card(data: dict[str, Any], reader: str) -> str:
    """The readable, bilingual form of the JSON contract of any card application (its ``kind``).

    It shows what the JSON shows, no more and no less: the SSC's SSN and the health card's
    number (the resident's ID number) in clear, as their JSON does; the bank card's PAN masked,
    as its JSON has it (docs/cli.md).
    """
    kind = data.get("kind", "ssc")
    if kind == "bank":
        return _render_bank(data, reader)
    if kind == "health":
        return _render_health(data, reader)
    lines = [f"社会保障卡 Social security card  [{reader}]"]
    holder, card = data["cardholder"], data["card"]
    rows: list[tuple[str, str, object]] = []
    for key, zh, en in _HOLDER_LABELS:
        value = holder[key]
        if key == "gender" and holder["gender_code"] is not None:
            value = f"{value or '?'} ({holder['gender_code']})"
        if key == "nation" and holder["nation_code"] is not None:
            value = f"{value or '?'} ({holder['nation_code']})"
        rows.append((zh, en, value if value is not None else "-"))
    for key, zh, en in _CARD_LABELS:
        rows.append((zh, en, card[key] if card[key] is not None else "-"))
    lines += label_rows(rows)
    lines += warning_lines(data["warnings"])
    return "\n".join(lines)


def _rows(values: dict[str, Any] | None, labels: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, object]]:
    """Table rows of ``labels`` from ``values`` (``-`` for null, and for every row when ``values`` is)."""
    return [(zh, en, "-" if values is None or values.get(key) is None else values[key]) for key, zh, en in labels]


def _coded(values: dict[str, Any] | None, key: str) -> None:
    """``男 (1)``: a label with its code, as the SSC table shows gender and nation."""
    if values is not None and values.get(f"{key}_code") is not None:
        values[key] = f"{values.get(key) or '?'} ({values[f'{key}_code']})"


def _render_bank(data: dict[str, Any], reader: str) -> str:
    lines = [f"金融应用 Bank application  [{reader}]"]
    lines += label_rows(_rows(data, _BANK_LABELS))
    return "\n".join(lines)


def _render_health(data: dict[str, Any], reader: str) -> str:
    lines = [f"居民健康卡 Resident health card  [{reader}]"]
    holder = dict(data["cardholder"]) if data["cardholder"] is not None else None
    _coded(holder, "gender")
    _coded(holder, "nation")
    lines += label_rows([*_rows(holder, _HEALTH_HOLDER_LABELS), *_rows(data["card"], _HEALTH_CARD_LABELS)])
    lines += warning_lines(data["warnings"])
    return "\n".join(lines)


#: The card applications ``--app`` names (the registry's, in its order: ssc, health, bank).
APPS: tuple[str, ...] = APPLICATIONS.names
#: The application each national format (of :data:`~sscard.cli.util.READ_FORMATS`) belongs to.
FORMAT_APPS = {"ireadcardbas": "ssc", "ireadbanknumber": "bank"}
#: Options that apply to some applications only: (dest, as written, the applications).  With
#: ``--app`` naming another, each is a usage error before the card is touched (docs/cli.md).
APPLIES_TO: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("allow_partial", "--allow-partial", ("ssc",)),
    ("photo", "--photo", ("ssc",)),
    ("hsm_step1", "--hsm-step1", ("ssc",)),
    ("hsm_step2", "--hsm-step2", ("ssc",)),
    ("key_service", "--key-service", ("ssc", "health")),
    ("sam_reader", "--sam-reader", ("ssc", "health")),
)


def read_app(ctx: Context) -> str | None:
    """The application a read asks for: ``--app``, else ``bank`` for ``--format ireadbanknumber``
    (an SSC that also carries the bank application would read as an SSC), else None: whichever
    the card carries.  An option that cannot apply to it is a :class:`UsageError` here, before
    the card is touched; ``--format ireadcardbas`` without ``--app`` reads whatever is there and
    refuses another kind by name afterwards (:func:`require_ssc`)."""
    args = ctx.args
    app: str | None = getattr(args, "app", None)
    fmt = "json" if ctx.json else getattr(args, "format", "text")
    wanted = app or ("bank" if fmt == "ireadbanknumber" else None)
    if wanted is None:
        return None
    title = APPLICATIONS.get(wanted)
    given = [(option, apps) for dest, option, apps in APPLIES_TO if getattr(args, dest, None)]
    if fmt in FORMAT_APPS:
        given.append((f"--format {fmt}", (FORMAT_APPS[fmt],)))
    for option, apps in given:
        if wanted not in apps:
            entries = [APPLICATIONS.get(name) for name in apps]
            names = " and ".join(f"the {entry.title_en} ({entry.name})" for entry in entries)
            raise UsageError(
                f"{option} applies to {names} only, not to the {title.title_en} ({wanted})",
                f"{option}仅适用于{'和'.join(entry.title_zh for entry in entries)}，不适用于{title.title_zh}",
            )
    return wanted


def require_ssc(card: Any, option: str, option_zh: str) -> None:
    """Refuse ``option`` (the SSC's own) on a card read as another application, naming it."""
    if card.kind != "ssc":
        title = APPLICATIONS.get(card.kind)
        raise OtherApplication(card.kind, title.title_en, option, title_zh=title.title_zh, option_zh=option_zh)


def read_card(ctx: Context, terminal: Any) -> int:
    """Read the card in ``terminal`` and print it in the form asked for (``--json``, ``--format``).

    Which application: :func:`read_app`.  ``--allow-partial`` is the SSC's (the health card
    returns its EF05 data without the key service anyway; the bank application has nothing
    locked); everything the SSC alone has is refused on another card before anything is printed.
    """
    card = terminal.read(read_app(ctx), require_cardholder=not getattr(ctx.args, "allow_partial", False))
    fmt = "json" if ctx.json else ctx.args.format
    if fmt == "ireadcardbas":
        require_ssc(card, "--format ireadcardbas", "国家接口格式（--format 'ireadcardbas'）")
    if getattr(ctx.args, "photo", None):
        require_ssc(card, "--photo", "读取照片（--photo）")
    if fmt == "json":
        print(json.dumps(card.to_json(), ensure_ascii=False), file=ctx.out)
    elif fmt == "ireadcardbas":
        from sscard.national import ireadcardbas

        print(ireadcardbas(card, ctx.config.terminal_id, ctx.config.device_id), file=ctx.out)
    elif fmt == "ireadbanknumber":
        from sscard.national.bank import ireadbanknumber

        print(ireadbanknumber(card), file=ctx.out)
    else:
        print(render_card(card.to_json(), card.reader), file=ctx.out)
    return EXIT_OK


def cmd_read(ctx: Context) -> int:
    if ctx.args.hsm_step1 and ctx.args.hsm_step2:
        raise UsageError("--hsm-step1 and --hsm-step2 are two separate calls", "两步须分开调用")
    read_app(ctx)  # an option that cannot apply to --app: refused before any file or card is touched
    from sscard.files import check_private_path, create_private_file

    for path in (ctx.args.output, ctx.args.photo):
        if path:
            check_private_path(path)  # refused before the card is read for nothing
    if not ctx.args.output:
        return _cmd_read(ctx)
    import io

    out, ctx.out = ctx.out, io.StringIO()
    try:
        status = _cmd_read(ctx)
        text = ctx.out.getvalue()
    finally:
        ctx.out = out
    create_private_file(ctx.args.output, text.encode("utf-8"))  # 0600: card data, the HSM step-1 line
    return status


def _cmd_read(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        if ctx.args.hsm_step1:
            print(terminal.hsm_step1().line(), file=ctx.out)
            return EXIT_OK
        if ctx.args.hsm_step2:
            return _hsm_step2(ctx, terminal)
        status = read_card(ctx, terminal)
        if ctx.args.photo:
            _write_photo(ctx, terminal)
        return status


def _hsm_step2(ctx: Context, terminal: Any) -> int:
    """Standard input: the step-1 line, then the HSM's answer line (docs/card-auth.md)."""
    lines = [line.strip() for line in ctx.stdin.read().splitlines() if line.strip()]
    if len(lines) != 2:
        raise UsageError(
            "--hsm-step2 reads two lines from standard input: the step-1 line, then the HSM's answer",
            "--hsm-step2 从标准输入读取两行：第一步输出和加密机返回结果",
        )
    card = terminal.hsm_step2(lines[0], lines[1])
    if ctx.json or ctx.args.format == "json":
        print(json.dumps(card.to_json(), ensure_ascii=False), file=ctx.out)
    else:
        print(render_card(card.to_json(), card.reader), file=ctx.out)
    return EXIT_OK


def _write_photo(ctx: Context, terminal: Any) -> None:
    """EF08 to a file, with a progress line on standard error (total unknown: bytes so far)."""
    from sscard.files import create_private_file

    def progress(done: int, total: int | None) -> None:
        shown = f"{done}/{total}" if total else f"{done}"
        bar = "#" * min(40, done // 128)
        print(f"\r照片 photo [{bar:<40}] {shown} bytes", end="", file=ctx.err, flush=True)

    # A bar redrawn with \r is for a person at a terminal; in a log file it is noise.
    on_terminal = isatty(ctx.err)
    photo = terminal.read_photo(progress if on_terminal else None)
    if on_terminal:
        print(file=ctx.err)
    create_private_file(ctx.args.photo, photo)  # 0600: the resident's face (issue 11)
    print(f"photo: {len(photo)} bytes written to {ctx.args.photo} / 照片已保存", file=ctx.err)


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    """``read``'s parser (:data:`READ_OPTIONS` must list the same options: tests/test_cli_startup.py)."""
    from sscard.cli.options import key_opts, read_opts

    def read_extra(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--photo", metavar="FILE", help="also read the photo (EF08) into FILE (mode 0600), with a progress bar"
        )
        p.add_argument(
            "--output", metavar="FILE", help="write the output (the card, or the HSM step-1 line) to FILE, mode 0600"
        )
        p.add_argument("--hsm-step1", action="store_true", help="HSM two-step: print what the HSM needs (step 1)")
        p.add_argument(
            "--hsm-step2", action="store_true", help="HSM two-step: stdin = step-1 line + HSM answer; print the card"
        )

    b.command(sub, name, text, cmd_read, [*b.card(), *b.options(read_opts, key_opts)], read_extra)


#: ``sscard read``'s options for the fast path (``fast_read_args``): dest, then the value's type
#: and choices, or None for a flag.  tests/test_cli_startup.py checks it against build_parser().
READ_OPTIONS: dict[str, tuple[str, Callable[[str], object] | None, tuple[object, ...] | None]] = {
    "--reader": ("reader", str, None),
    "-r": ("reader", str, None),
    "--itype": ("itype", int, (1, 2, 3, 4)),
    "--wait": ("wait", float, None),
    "--json": ("json", None, None),
    "--app": ("app", str, APPS),
    "--format": ("format", str, READ_FORMATS),
    "--terminal-id": ("terminal_id", str, None),
    "--device-id": ("device_id", str, None),
    "--allow-partial": ("allow_partial", None, None),
    "--key-service": ("key_service", str, ("none", "psam", "hsm", "software")),
    "--sam-reader": ("sam_reader", str, None),
    "--photo": ("photo", str, None),
    "--output": ("output", str, None),
    "--hsm-step1": ("hsm_step1", None, None),
    "--hsm-step2": ("hsm_step2", None, None),
    "--config": ("config_after", str, None),
    "--show-personal-data": ("show_personal_data_after", None, None),
    "--log-format": ("log_format_after", str, LOG_FORMATS),
    "--log-file": ("log_file_after", str, None),
}


def fast_read_args(argv: Sequence[str]) -> Any:
    """The parsed arguments of a plain ``sscard read …`` without argparse, or None.

    Importing argparse and building even one command's parser takes ~10 ms (gettext looks for
    translations of every help string), a fifth of a read's start-up (issue 11, item 14).  This
    handles only the simple spellings (``--opt value``, flags, ``-v``); anything else — ``--opt=…``,
    abbreviations, ``-h``, a value that starts with ``-`` or fails its type or choices — returns
    None and argparse parses it, so every error and help text is argparse's.  The result equals
    argparse's namespace (tests/test_cli_startup.py compares them).
    """
    import types

    values: dict[str, Any] = {
        "config": None,
        "verbose": 0,
        "command": "read",
        "config_after": None,
        "verbose_after": 0,
        "show_personal_data": False,
        "show_personal_data_after": False,
        "log_format": None,
        "log_file": None,
        "func": cmd_read,
        "format": "text",
    }
    for _key, (dest, kind, _choices) in READ_OPTIONS.items():
        values.setdefault(dest, False if kind is None else None)
    words = list(argv)
    index, seen_command = 0, False
    while index < len(words):
        word = words[index]
        index += 1
        if not seen_command:
            if word == "read":
                seen_command = True
            elif word in ("-v", "--verbose", "-vv"):
                values["verbose"] += 2 if word == "-vv" else 1
            elif word == "--config" and index < len(words) and not words[index].startswith("-"):
                values["config"] = words[index]
                index += 1
            else:
                return None
            continue
        if word in ("-v", "--verbose", "-vv"):
            values["verbose_after"] += 2 if word == "-vv" else 1
            continue
        option = READ_OPTIONS.get(word)
        if option is None:
            return None
        dest, kind, choices = option
        if kind is None:
            values[dest] = True
            continue
        if index >= len(words) or words[index].startswith("-"):
            return None
        try:
            value = kind(words[index])
        except ValueError:
            return None
        if choices is not None and value not in choices:
            return None
        values[dest] = value
        index += 1
    return types.SimpleNamespace(**values) if seen_command else None
