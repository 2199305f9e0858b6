"""The argument parser: every command listed, only the given command's options built.

Building every command's options costs more than the rest of a read's start-up together (~10 ms of
argparse: issue 11, item 14), so :func:`build_parser` builds only those of the command it is given,
by importing that command's family module and calling its ``build``.  Each command offers only
the options it uses; ``--config`` and ``-v`` are accepted after it too.  A plain ``sscard read``
does not come here at all (:func:`sscard.cli.read.fast_read_args`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sscard import __version__
from sscard.cli.util import EXIT_CODES, EXIT_USAGE
from sscard.errors import CATEGORIES, INTERNAL

if TYPE_CHECKING:
    import argparse

#: (command, its family module under sscard.cli, English, Chinese), in the order --help lists them.
COMMAND_TABLE: tuple[tuple[str, str, str, str], ...] = (
    ("readers", "cards", "list PC/SC readers (* = card present)", "列出读卡器（*表示有卡）"),
    ("read", "read", "read card and cardholder data", "读取卡片和持卡人信息"),
    ("auth-check", "cards", "is the card genuine (internal authentication)", "验证卡片真伪（内部认证）"),
    ("sign-in", "cards", "sign a resident in: session and token", "持卡人登录：会话和令牌"),
    ("verify", "cards", "verify the cardholder's PIN (once; never retried)", "校验持卡人密码（只发送一次，不重试）"),
    ("pin-status", "cards", "tries left, without spending one", "查询密码剩余尝试次数（不消耗次数）"),
    ("change-pin", "cards", "change the PIN (stdin: old, then new)", "修改密码（标准输入：先原密码，后新密码）"),
    ("sim", "sim", "the built-in simulated card", "内置模拟卡"),
    ("idcard", "serial", "resident ID-card reader on a serial port (docs/serial.md)", "串口居民身份证阅读器"),
    (
        "watch",
        "serial",
        "print card and reader events as JSON lines until Ctrl-C",
        "以JSON行输出卡片和读卡器事件，按Ctrl-C结束",
    ),
    (
        "scan",
        "serial",
        "print QR credentials from a serial scanner, one line each, until Ctrl-C",
        "逐行输出串口扫码器扫到的二维码凭证，按Ctrl-C结束",
    ),
    (
        "medical",
        "medical",
        "hospital front desks: any credential as the medical insurance platform's fields (docs/medical.md)",
        "医院窗口：任一凭证转为医保平台的字段",
    ),
    ("serve", "service", "the local kiosk service: HTTP + WebSocket", "本地自助终端服务：HTTP和WebSocket"),
    ("record", "traces", "run an operation and write its trace", "执行操作并记录APDU日志"),
    ("replay", "traces", "replay a trace strictly", "严格回放APDU日志"),
    (
        "token",
        "tokens",
        "session tokens: verify one offline, make a terminal key (docs/tokens.md)",
        "会话令牌：离线校验、生成终端密钥",
    ),
    ("demo", "cards", "read a real card, or the demo card via pcscd+vpcd", "读取实体卡；没有时经pcscd和vpcd读取演示卡"),
    (
        "completion",
        "completion",
        "print a shell completion script (eval it, or save it where the shell looks)",
        "输出命令行补全脚本",
    ),
    (
        "install-rules",
        "service",
        "install (or print) the udev and polkit rules for a non-root kiosk user",
        "安装（或输出）非root自助终端用户所需的udev和polkit规则",
    ),
    ("config", "config", "the configuration: the effective values and their sources", "配置：生效的配置值及其来源"),
    (
        "doctor",
        "doctor",
        "check this kiosk: what is wrong and what to do (docs/doctor.md)",
        "现场诊断：检查本机故障并给出处理方法",
    ),
)
#: The commands, for building only the one given (build_parser).
COMMANDS = frozenset(name for name, *_ in COMMAND_TABLE)


def exit_code_epilog() -> str:
    """The exit codes (the one error table's categories), for ``sscard --help``."""
    by_status: dict[int, list[str]] = {}
    for code, status in EXIT_CODES.items():
        by_status.setdefault(status, []).append(code)
    summaries = {category.exit_code: category.summary for category in CATEGORIES if category.exit_code is not None}
    lines = ["exit codes / 退出码:", "  0   success / 成功", f"  {INTERNAL.exit_code:<3} {INTERNAL.summary}"]
    lines.append(
        f"  {EXIT_USAGE:<3} {summaries[EXIT_USAGE]}: "
        + ", ".join(c for c in by_status.pop(EXIT_USAGE) if c != "USAGE_ERROR")
    )
    lines += [
        f"  {status:<3} " + (f"{summaries[status]}: " if summaries.get(status) else "") + ", ".join(codes)
        for status, codes in sorted(by_status.items())
    ]
    lines.append("  130 interrupted (Ctrl-C) / 已中断")
    lines.append("  141 standard output closed (e.g. | head) / 标准输出已关闭")
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that command's options are built.

    Every command is listed (``sscard --help``, choices) when ``command`` is None (all built) or
    unknown (listed with its description, for argparse's "invalid choice"); a known command is
    the only one listed.
    """
    import argparse

    from sscard.cli.options import Builder, global_opts

    builder = Builder(argparse)
    parser = argparse.ArgumentParser(
        prog="sscard",
        description="Social security card (社会保障卡) reader middleware / 社会保障卡读卡中间件",
        epilog=exit_code_epilog(),
        formatter_class=builder.formatter,
    )
    parser.add_argument("--version", action="version", version=f"sscard {__version__}")
    global_opts(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, family, english, chinese in COMMAND_TABLE:
        text = f"{english} / {chinese}"
        if command is None or command == name:
            importlib.import_module(f"sscard.cli.{family}").build(builder, sub, name, text)
        elif command not in COMMANDS:  # listed, with its one-line description, but its options are not built
            sub.add_parser(name, help=text, description=text)
    return parser
