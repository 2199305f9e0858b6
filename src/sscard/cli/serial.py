"""Serial devices and events (docs/serial.md).

``scan`` (QR scanners), ``idcard read`` (resident ID-card readers), ``watch`` (card, reader and scan events).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from sscard.cli.util import EXIT_OK, Context, label_rows, stop_on_signals, warning_lines
from sscard.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder

# Bilingual labels for the resident ID card (docs/serial.md), in card-face order.
_IDCARD_LABELS = (
    ("name", "姓名", "Name"),
    ("gender", "性别", "Gender"),
    ("nation", "民族", "Nation"),
    ("birth_date", "出生日期", "Birth date"),
    ("address", "住址", "Address"),
    ("id_number", "公民身份号码", "ID number"),
    ("issuer", "签发机关", "Issuing authority"),
    ("valid_from", "有效期起", "Valid from"),
    ("valid_to", "有效期止", "Valid to"),
)


def render_idcard(record: Any, port: str) -> str:
    """The readable, bilingual form of the ``idcard read --json`` contract (codes shown as in render_card)."""
    data = record.to_json()
    lines = [f"居民身份证 Resident ID card  [{port}]"]
    rows: list[tuple[str, str, object]] = []
    for key, zh, en in _IDCARD_LABELS:
        value = data[key]
        if key == "gender":
            value = f"{value or '?'} ({record.gender_code})"
        elif key == "nation":
            value = f"{value or '?'} ({record.nation_code})"
        elif key == "valid_to" and value == "long-term":
            value = "长期 (long-term)"
        rows.append((zh, en, value if value not in (None, "") else "-"))
    rows.append(("相片", "Photo", f"WLT, {len(record.photo_wlt)} bytes"))
    lines += label_rows(rows)
    lines += warning_lines(data["warnings"])
    return "\n".join(lines)


def cmd_idcard_read(ctx: Context) -> int:
    """One resident ID card from a serial reader: find, select, read (docs/serial.md)."""
    from sscard.idcard import IdCardReader
    from sscard.transports.serial import SerialPort

    if ctx.args.timeout <= 0:
        raise UsageError("--timeout must be positive", "--timeout必须大于0")
    if ctx.args.baud <= 0:
        raise UsageError("--baud must be positive", "--baud必须大于0")
    with SerialPort(ctx.args.port, ctx.args.baud) as port:
        record = IdCardReader(port, timeout=ctx.args.timeout).read_card()
    ctx.emit(record.to_json(), render_idcard(record, ctx.args.port))
    return EXIT_OK


def cmd_watch(ctx: Context) -> int:
    """One JSON line per event until Ctrl-C/SIGTERM, ``--count`` events or ``--timeout`` seconds."""
    from sscard.events import Monitor

    pattern = ctx.args.reader or ctx.config.reader
    if pattern and pattern.startswith(("sim:", "replay:")):
        raise UsageError(
            "watch follows PC/SC readers; give a reader-name substring",
            "监视命令只适用于PC/SC读卡器，请给出读卡器名称的一部分",
        )
    monitor = Monitor(pattern, initial=not ctx.args.no_initial)

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("sscard.cli").info("watch: %s received, stopping", signal.Signals(signum).name)

    done = stop_on_signals(on_signal)
    seen = 0

    def on_event(event: Any) -> None:
        nonlocal seen
        print(json.dumps(event.to_json(), ensure_ascii=False), file=ctx.out, flush=True)
        seen += 1
        if ctx.args.count and seen >= ctx.args.count:
            done.set()

    thread = monitor.start(on_event)
    qr_port = ctx.args.qr_port or ctx.config.qr_port
    if qr_port:  # scans join the stream (docs/serial.md)
        from sscard.credentials import follow_scanner, qr_config

        scanner = qr_config(ctx.config)
        threading.Thread(
            target=follow_scanner, args=(qr_port, scanner, done, monitor.publish), name="sscard-scan", daemon=True
        ).start()
    try:
        if not done.wait(ctx.args.timeout):
            logging.getLogger("sscard.cli").info("watch: %g s timeout, stopping", ctx.args.timeout)
    finally:
        monitor.stop()
        thread.join(timeout=5)
    return EXIT_OK


def cmd_scan(ctx: Context) -> int:
    """One line per credential as it comes, until Ctrl-C/SIGTERM, ``--count`` scans or ``--timeout``.

    A rejected scan is an error line on stderr and listening goes on; an unplugged scanner is
    reported on stderr and waited for (the same path: a udev link), then scanning resumes.
    ``--timeout`` with ``--count`` not reached ends with DEVICE_TIMEOUT (exit 11).
    """
    from sscard.errors import DeviceTimeout
    from sscard.qr import QrConfig, QrCredential, QrScanner, ScannerRestored
    from sscard.transports.serial import SerialPort

    config = QrConfig(baudrate=ctx.args.baud, terminator=ctx.args.terminator)
    port = SerialPort(ctx.args.port, config.baudrate)  # DEVICE_NOT_FOUND (exit 11) when absent
    stop, timed_out = stop_on_signals(), threading.Event()

    def expire() -> None:
        timed_out.set()
        stop.set()

    if ctx.args.timeout is not None:
        timer = threading.Timer(ctx.args.timeout, expire)
        timer.daemon = True
        timer.start()
    print(f"listening on {port.name}; Ctrl-C stops / 正在监听扫码器，按Ctrl-C结束", file=ctx.err, flush=True)
    seen = 0
    with QrScanner(port, config) as scanner:
        for item in scanner.scans(stop, reopen=lambda: port.reopen(timeout=0)):
            if isinstance(item, QrCredential):
                ctx.emit(item.to_json(), f"{item.kind.value} {item.code}")
                ctx.out.flush()
                seen += 1
                if ctx.args.count and seen >= ctx.args.count:
                    break
            elif isinstance(item, ScannerRestored):
                print(f"scanner {item.device} is back / 扫码器已恢复", file=ctx.err, flush=True)
            elif ctx.json:  # ScanRejected, DeviceRemoved: reported, and listening goes on
                print(json.dumps({"error": item.to_dict()}, ensure_ascii=False), file=ctx.err, flush=True)
            else:
                print(f"error {item.code}: {item.message} / {item.message_zh}", file=ctx.err, flush=True)
    if ctx.args.count and seen < ctx.args.count and timed_out.is_set():
        raise DeviceTimeout(ctx.args.port, f"{seen} of {ctx.args.count} scans in {ctx.args.timeout:g} s")
    return EXIT_OK


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt
    from sscard.qr import TERMINATORS

    def idcard_commands(p: argparse.ArgumentParser) -> None:
        idcard_sub = p.add_subparsers(dest="idcard_command", required=True, metavar="IDCARD_COMMAND")
        q = b.command(
            idcard_sub,
            "read",
            "read a resident ID card: find, select, read text and photo / 读取居民身份证：寻卡、选卡、读文字和照片",
            cmd_idcard_read,
            b.options(json_opt),
        )
        q.add_argument("--port", required=True, help="serial port, e.g. /dev/sscard-idcard or /dev/ttyUSB0")
        q.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
        q.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="per command (default 3)")

    def watch_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reader", "-r", help="only readers whose name contains this")
        p.add_argument("--count", type=int, metavar="N", help="stop after N events")
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
        p.add_argument("--no-initial", action="store_true", help="do not report readers and cards already there")
        p.add_argument("--qr-port", help="also report scans of this QR scanner (default [qr] port)")

    def scan_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", required=True, help="the scanner's serial port, e.g. /dev/ttyACM0 or a udev link")
        p.add_argument("--baud", type=int, default=9600, metavar="N", help="baud rate (default 9600)")
        p.add_argument(
            "--terminator",
            choices=tuple(TERMINATORS),  # any (the default) takes CR, LF and CR LF alike (issue 11)
            default="any",
            help="what ends a scan (default any: CR, LF or CR LF; none: a pause)",
        )
        p.add_argument(
            "--json", action="store_true", help='one JSON object per scan: {"kind", "code", "device", "time"}'
        )
        p.add_argument("--count", type=int, metavar="N", help="stop after N scans")
        p.add_argument(
            "--timeout", type=float, metavar="SECONDS", help="stop after SECONDS (with --count: fail if short)"
        )

    if name == "idcard":
        b.command(sub, name, text, None, build=idcard_commands)
    elif name == "watch":
        b.command(sub, name, text, cmd_watch, build=watch_build)
    elif name == "scan":
        b.command(sub, name, text, cmd_scan, build=scan_build)
