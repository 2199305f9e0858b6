"""``sscard``: the command-line front end (docs/cli.md).

Errors print their stable code and the English and Chinese messages — never a traceback (``-vv``
shows one for bug reports).  PINs come from a hidden prompt or ``--pin-stdin``, never from an
argument, so they never appear in ``ps`` output or shell history.

Exit codes (stable):

====  ===========================================================================================
0     success
1     internal error (a bug: please report it with ``-vv`` output)
2     usage error (USAGE_ERROR, NOT_SIGNED_IN, SESSION_ACTIVE, REPLAY_PIN_REFUSED)
3     environment: NO_SERVICE, NO_READER, NO_CARD, CARD_REMOVED, CARD_RESET, CARD_CHANGED, READER_BUSY,
      CARD_MUTE, TRANSPORT_ERROR, TIMEOUT
4     card: NOT_SSC, BAD_RECORD, CARD_ERROR, CARD_LOCKED, AUTH_REQUIRED, CARD_NOT_GENUINE,
      TERMINAL_AUTH_FAILED
5     PIN: PIN_INCORRECT, PIN_FORMAT, PIN_MISMATCH
6     PIN_BLOCKED
7     CONFIG_ERROR, TRACE_MISMATCH, TRACE_INVALID, TOKEN_KEY_ERROR, FILE_REFUSED
8     key service: PSAM_MISSING, PSAM_KEY_MISSING, PSAM_ERROR, ALGORITHM_UNSUPPORTED, HSM_RESPONSE_INVALID
9     token rejected: TOKEN_MALFORMED, TOKEN_INVALID, TOKEN_NOT_YET_VALID, TOKEN_WRONG_TERMINAL
10    TOKEN_EXPIRED
11    serial devices: DEVICE_NOT_FOUND, DEVICE_REMOVED, DEVICE_TIMEOUT, FRAME_ERROR, SCAN_REJECTED,
      ID_CARD_NO_CARD, ID_CARD_SELECT_FAILED, ID_CARD_READ_FAILED, ID_CARD_ERROR
====  ===========================================================================================
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from sscard import __version__
from sscard.config import Config, load_config
from sscard.errors import PinMismatch, SscardError, UsageError

# argparse is imported by build_parser, getpass by the PIN prompt: start-up (issue 11, item 14).
if TYPE_CHECKING:
    import argparse

    from sscard.ssc.pin import Pin

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
EXIT_CODES: dict[str, int] = {
    **dict.fromkeys(
        (
            "NO_SERVICE",
            "NO_READER",
            "NO_CARD",
            "CARD_REMOVED",
            "CARD_RESET",
            "CARD_CHANGED",
            "READER_BUSY",
            "CARD_MUTE",
            "TRANSPORT_ERROR",
            "TIMEOUT",
        ),
        3,
    ),
    **dict.fromkeys(
        (
            "NOT_SSC",
            "BAD_RECORD",
            "CARD_ERROR",
            "CARD_LOCKED",
            "AUTH_REQUIRED",
            "CARD_NOT_GENUINE",
            "TERMINAL_AUTH_FAILED",
        ),
        4,
    ),
    **dict.fromkeys(
        ("PSAM_MISSING", "PSAM_KEY_MISSING", "PSAM_ERROR", "ALGORITHM_UNSUPPORTED", "HSM_RESPONSE_INVALID"), 8
    ),
    **dict.fromkeys(("NOT_SIGNED_IN", "SESSION_ACTIVE"), 2),
    **dict.fromkeys(
        (
            "DEVICE_NOT_FOUND",
            "DEVICE_REMOVED",
            "DEVICE_TIMEOUT",
            "FRAME_ERROR",
            "SCAN_REJECTED",
            "ID_CARD_NO_CARD",
            "ID_CARD_SELECT_FAILED",
            "ID_CARD_READ_FAILED",
            "ID_CARD_ERROR",
        ),
        11,
    ),
    **dict.fromkeys(("PIN_INCORRECT", "PIN_FORMAT", "PIN_MISMATCH"), 5),
    "PIN_BLOCKED": 6,
    **dict.fromkeys(("CONFIG_ERROR", "TRACE_MISMATCH", "TOKEN_KEY_ERROR"), 7),
    **dict.fromkeys(("TRACE_INVALID", "FILE_REFUSED"), 7),  # issue 11
    "REPLAY_PIN_REFUSED": EXIT_USAGE,
    **dict.fromkeys(("TOKEN_MALFORMED", "TOKEN_INVALID", "TOKEN_NOT_YET_VALID", "TOKEN_WRONG_TERMINAL"), 9),
    "TOKEN_EXPIRED": 10,
    "USAGE_ERROR": EXIT_USAGE,
}

DEMO_PERSONA = "typical"
VPCD_PREFIX = "Virtual PCD"

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


class Context:
    """What every command needs: parsed options, configuration and the output streams."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.stdin = stdin
        self._config: Config | None = None

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.args.config).with_overrides(
                reader=getattr(self.args, "reader", None),
                itype=getattr(self.args, "itype", None),
                key_service=getattr(self.args, "key_service", None),
                sam_reader=getattr(self.args, "sam_reader", None),
                terminal_id=getattr(self.args, "terminal_id", None),
                device_id=getattr(self.args, "device_id", None),
            )
            if self._config.show_personal_data:
                from sscard.privacy import show_personal_data

                show_personal_data(True, f"[logging] show_personal_data in {self._config.source}")
        return self._config

    def emit(self, payload: dict[str, Any], text: str) -> None:
        print(json.dumps(payload, ensure_ascii=False) if self.json else text, file=self.out)

    def read_pin(self, prompt: str) -> Pin:
        """One PIN from ``--pin-stdin`` (the next line only) or a hidden prompt; never from argv.

        Called as late as possible: by each command once the card is known to be there and to be
        a social security card (issue 11).  The digits go straight from the file descriptor into
        one ``bytearray`` (:class:`~sscard.ssc.pin.Pin`), wiped by the terminal after use.
        """
        if getattr(self.args, "pin_stdin", False):
            pin = _read_pin_line(self.stdin)
            if pin is None:
                raise UsageError("--pin-stdin given but standard input is empty", "已指定--pin-stdin但标准输入为空")
            return pin
        if not self.stdin.isatty():
            raise UsageError(
                "no terminal for a hidden PIN prompt; pipe the PIN with --pin-stdin",
                "没有终端可用于隐藏输入密码，请使用--pin-stdin",
            )
        return _prompt_pin(prompt)

    def open_terminal(self, **kwargs: Any) -> Any:
        from sscard.terminal import Terminal

        terminal = Terminal.open(self.config.reader, config=self.config, **kwargs)
        wait = getattr(self.args, "wait", None)
        if wait:
            if _isatty(self.err) and not terminal.reader.card_present():
                print(
                    f"请插入社会保障卡（等待{wait:g}秒）… / Insert the card (waiting up to {wait:g} s)…",
                    file=self.err,
                    flush=True,
                )
            terminal.wait_for_card(wait)
        return terminal


#: The longest PIN line read (a PIN is at most 12 digits; longer input is PIN_FORMAT, not kept).
_PIN_LINE_MAX = 64


def _read_pin_line(stream: TextIO) -> Pin | None:
    """The next line of ``stream`` as a Pin (None at end of input), reading no further.

    From a real file descriptor the bytes are read one at a time into a preallocated buffer
    (``os.readv``), so no ``bytes`` or ``str`` copy of the digits is made and the next line is
    left for the next PIN.  A stream without one (``io.StringIO`` in tests) goes through ``str``.
    """
    import os

    from sscard.ssc.pin import Pin

    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd < 0 or not hasattr(os, "readv"):
        line = stream.readline()
        return Pin.from_text(line.rstrip("\r\n")) if line else None
    return _read_fd_line(fd)


def _read_fd_line(fd: int) -> Pin | None:
    import os

    from sscard.errors import PinFormat
    from sscard.ssc.pin import Pin, wipe

    buffer = bytearray(_PIN_LINE_MAX)
    view = memoryview(buffer)
    size, ended = 0, False
    try:
        while size < len(buffer):
            if os.readv(fd, [view[size : size + 1]]) == 0:
                break  # end of input
            if buffer[size] == 0x0A:
                ended = True
                break
            size += 1
        else:
            raise PinFormat("PIN line too long")
        if size == 0 and not ended:
            return None
        if size and buffer[size - 1] == 0x0D:
            size -= 1
        return Pin(bytearray(view[:size]))  # the one buffer the terminal wipes
    finally:
        view.release()
        wipe(buffer)


def _prompt_pin(prompt: str) -> Pin:
    """A hidden prompt on the controlling terminal, read into a Pin (``getpass`` would give a ``str``)."""
    import os

    try:
        import termios

        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except (ImportError, OSError):  # no controlling terminal (or not POSIX): getpass's own fallbacks
        import getpass

        from sscard.ssc.pin import Pin

        return Pin.from_text(getpass.getpass(prompt))
    try:
        saved = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
        try:
            os.write(fd, prompt.encode("utf-8"))
            pin = _read_fd_line(fd)
        finally:
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
            os.write(fd, b"\n")
    finally:
        os.close(fd)
    if pin is None:
        raise UsageError("no PIN entered", "未输入密码")
    return pin


def _pin_card_ready(terminal: Any) -> None:
    """Before asking for a PIN: the reader takes PINs, a card is there, it is an SSC, not blocked.

    One SELECT and the tries-left query (no try spent); NO_CARD, NOT_SSC, PIN_BLOCKED,
    REPLAY_PIN_REFUSED come out here, before anybody types a PIN that could not be used.
    """
    from sscard.errors import PinBlocked
    from sscard.ssc.application import PinState

    terminal.check_pin_allowed()
    if terminal.pin_status().state is PinState.BLOCKED:
        raise PinBlocked("the tries-left query says so; no PIN asked for")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        return False


# --- commands ---------------------------------------------------------------------------------


def cmd_readers(ctx: Context) -> int:
    """Every PC/SC reader, whether it holds a card, its slot kind, and which ones ``read`` would use."""
    from sscard.readers import reader_rows

    rows = reader_rows(ctx.config)
    text = (
        "\n".join(
            f"{'*' if r['card_present'] else ' '} {r['name']}  [{r['kind']}"
            + (f", card reader #{r['preference']}" if r["preference"] else "")
            + "]"
            for r in rows
        )
        or "(no readers / 无读卡器)"
    )
    ctx.emit({"readers": rows}, text)
    return EXIT_OK


def _read(ctx: Context, terminal: Any) -> int:
    card = terminal.read(require_cardholder=not ctx.args.allow_partial)
    fmt = "json" if ctx.json else ctx.args.format
    if fmt == "json":
        print(json.dumps(card.to_json(), ensure_ascii=False), file=ctx.out)
    elif fmt == "ireadcardbas":
        from sscard.national import ireadcardbas

        print(ireadcardbas(card, ctx.config.terminal_id, ctx.config.device_id), file=ctx.out)
    else:
        print(render_card(card.to_json(), card.reader), file=ctx.out)
    return EXIT_OK


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: East Asian wide and full-width characters (汉字, ：)
    take two, combining marks none, the rest one.  ``str.ljust`` counts characters, which puts a
    column after Chinese labels out of line."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def label_rows(rows: Sequence[tuple[str, str, object]]) -> list[str]:
    """``  中文 English   value`` lines whose values all start in the same terminal column."""
    labels = [f"{zh} {en}" for zh, en, _ in rows]
    width = max((display_width(label) for label in labels), default=0)
    return [
        f"  {label}{' ' * (width - display_width(label))}  {value}"
        for label, (_, _, value) in zip(labels, rows, strict=True)
    ]


def render_card(data: dict[str, Any], reader: str) -> str:
    """The readable, bilingual form of the JSON contract."""
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
    for warning in data["warnings"]:
        lines.append(f"  ! {warning['code']}: {warning['message']} / {warning['message_zh']}")
    return "\n".join(lines)


def cmd_read(ctx: Context) -> int:
    if ctx.args.hsm_step1 and ctx.args.hsm_step2:
        raise UsageError("--hsm-step1 and --hsm-step2 are two separate calls", "两步须分开调用")
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
        status = _read(ctx, terminal)
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
    on_terminal = _isatty(ctx.err)
    photo = terminal.read_photo(progress if on_terminal else None)
    if on_terminal:
        print(file=ctx.err)
    create_private_file(ctx.args.photo, photo)  # 0600: the resident's face (issue 11)
    print(f"photo: {len(photo)} bytes written to {ctx.args.photo} / 照片已保存", file=ctx.err)


def cmd_auth_check(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        by = terminal.auth_check()
    ctx.emit({"genuine": True, "authenticated_by": by}, f"genuine card / 真卡 (by {by})")
    return EXIT_OK


def cmd_sign_in(ctx: Context) -> int:
    """Sign in, print the session (and token); with --hold, stay until the session ends."""
    from sscard.session import SessionEvent

    needs_pin = ctx.config.require_pin and not ctx.args.no_pin
    with ctx.open_terminal() as terminal:
        ended: list[SessionEvent] = []
        terminal.sessions.subscribe(lambda event: ended.append(event) if event.kind == "ended" else None)
        # The PIN is asked for by sign_in once the card has been read (issue 11), not before.
        pin = (lambda: ctx.read_pin("PIN 密码: ")) if needs_pin else None
        session = terminal.sign_in(pin, require_pin=needs_pin)
        data = session.to_json()
        ctx.emit({"session": data}, "\n".join(f"  {k:<16} {v}" for k, v in data.items() if v is not None))
        if ctx.args.hold:
            done = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: done.set())
            while not done.is_set() and terminal.session is not None:
                terminal.sessions.wait_ended(0.5)
            if terminal.session is not None:
                terminal.sign_out()
            for event in ended:
                print(json.dumps(event.to_json(), ensure_ascii=False), file=ctx.out, flush=True)
    return EXIT_OK


def _pin_result(ctx: Context, outcome: Any) -> int:
    if not outcome.ok:
        outcome.raise_for_error()
    ctx.emit({"pin": outcome.to_dict()}, "PIN verified. 密码验证成功。")
    return EXIT_OK


def cmd_verify(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        _pin_card_ready(terminal)
        return _pin_result(ctx, terminal.verify(ctx.read_pin("PIN 密码: ")))


def cmd_pin_status(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        outcome = terminal.pin_status()
    left = "unknown 未知" if outcome.tries_left is None else str(outcome.tries_left)
    ctx.emit({"pin": outcome.to_dict()}, f"PIN state 密码状态: {outcome.state.value}; tries left 剩余次数: {left}")
    return EXIT_OK


def cmd_change_pin(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        _pin_card_ready(terminal)
        with ctx.read_pin("Current PIN 原密码: ") as old, ctx.read_pin("New PIN 新密码: ") as new:
            if not ctx.args.pin_stdin:
                with ctx.read_pin("New PIN again 再次输入新密码: ") as again:
                    if not again.matches(new):
                        raise PinMismatch()
            outcome = terminal.change_pin(old, new)
    if not outcome.ok:
        outcome.raise_for_error()
    ctx.emit({"pin": {"state": "changed"}}, "PIN changed. 密码修改成功。")
    return EXIT_OK


def cmd_sim_list(ctx: Context) -> int:
    from sscard.sim import list_personas, load_persona

    rows = [{"name": name, "description": load_persona(name).description} for name in list_personas()]
    ctx.emit({"personas": rows}, "\n".join(f"{r['name']:<20} {r['description']}" for r in rows))
    return EXIT_OK


def cmd_sim_insert(ctx: Context) -> int:
    from sscard.sim import SimulatedCard, load_persona
    from sscard.sim.vpcd import VpcdLink

    card = SimulatedCard(load_persona(ctx.args.persona))
    if ctx.args.remove_after is not None:
        card.remove_after = ctx.args.remove_after
    if ctx.args.remove_during is not None:
        card.remove_during = ctx.args.remove_during
    port = ctx.args.port or VpcdLink.port_for_slot(ctx.args.slot)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with VpcdLink(card, host=ctx.args.host, port=port, reconnect=True) as link:
        link.insert()
        print(
            f"inserted persona '{ctx.args.persona}' into vpcd {ctx.args.host}:{port} (it stays across pcscd "
            f"restarts); Ctrl-C removes it "
            f"/ 已插入模拟卡，按Ctrl-C拔出",
            file=ctx.err,
            flush=True,
        )
        while not stop.wait(0.5) and link.serving:
            pass
    print("card removed / 卡已拔出", file=ctx.err)
    return EXIT_OK


DEMO_IDCARD = "zhangsan"

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
    for warning in data["warnings"]:
        lines.append(f"  ! {warning['code']}: {warning['message']} / {warning['message_zh']}")
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


def cmd_sim_idcard(ctx: Context) -> int:
    """A simulated ID-card reader on a pty with the persona's card on it, until Ctrl-C/SIGTERM."""
    from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard

    persona = load_idcard(ctx.args.persona)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SimulatedIdCardReader(persona, link=ctx.args.link) as sim:
        device = f" (-> {sim.device})" if ctx.args.link else ""
        print(
            f"simulated ID-card reader with persona '{persona.key}' on {sim.path}{device}; "
            f"read it with: sscard idcard read --port {sim.path}; Ctrl-C stops it "
            f"/ 模拟身份证阅读器已就绪，按Ctrl-C退出",
            file=ctx.err,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    print("reader unplugged / 阅读器已断开", file=ctx.err)
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
    done = threading.Event()
    seen = 0

    def on_event(event: Any) -> None:
        nonlocal seen
        print(json.dumps(event.to_json(), ensure_ascii=False), file=ctx.out, flush=True)
        seen += 1
        if ctx.args.count and seen >= ctx.args.count:
            done.set()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("sscard.cli").info("watch: %s received, stopping", signal.Signals(signum).name)
        done.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
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


def cmd_token_verify(ctx: Context) -> int:
    """Check a session token offline (docs/tokens.md): signature, then expiry, then terminal."""
    from sscard.tokens import PublicKeys, key_ring, load_public_key, verify_token

    given = ctx.args.token
    given = ctx.stdin.read() if given == "-" else given
    paths = ctx.args.public_key or ([ctx.config.token_public_key] if ctx.config.token_public_key else [])
    if not paths:
        raise UsageError(
            "give --public-key PATH, or set [session] public_key",
            "请用--public-key指定公钥，或在配置[session]中设置public_key",
        )
    keys = [load_public_key(path) for path in paths]
    trusted: PublicKeys = keys[0] if len(keys) == 1 else key_ring(keys)
    leeway = ctx.config.token_leeway if ctx.args.leeway is None else ctx.args.leeway
    claims = verify_token(given.strip(), trusted, terminal_id=ctx.args.expected_terminal, leeway=leeway)
    data = {**claims.to_payload(), "issued": _local_time(claims.issued_at), "expires": _local_time(claims.expires_at)}
    rows = (
        ("会话编号", "Session id", claims.session_id),
        ("终端机编号", "Terminal id", claims.terminal_id),
        ("登录方式", "Method", claims.method),
        ("社会保障号码", "Social security number", claims.ssn),
        ("姓名", "Name", claims.name),
        ("卡号", "Card number", claims.card_number),
        ("卡识别码", "Card identification code", claims.card_id),
        ("签发时间", "Issued", data["issued"]),
        ("过期时间", "Expires", data["expires"]),
        ("密钥编号", "Key id", claims.key_id or "-"),
    )
    text = "Session token valid. 会话令牌有效。\n" + "\n".join(label_rows(rows))
    ctx.emit({"session": data}, text)
    return EXIT_OK


def cmd_token_keygen(ctx: Context) -> int:
    """A terminal's Ed25519 key pair: the private key mode 0600 (kept on the kiosk), the public key for verifiers."""
    from sscard.tokens import write_terminal_key

    kid = write_terminal_key(ctx.args.private, ctx.args.public, overwrite=ctx.args.force)
    ctx.emit(
        {"kid": kid, "private": ctx.args.private, "public": ctx.args.public},
        f"key id 密钥编号 {kid}\n  private key 私钥 {ctx.args.private} (mode 0600: keep it on the kiosk 仅存放于终端)\n"
        f"  public key 公钥 {ctx.args.public} (give it to the verifiers 提供给验证方)",
    )
    return EXIT_OK


def _local_time(seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).astimezone().isoformat(timespec="seconds")


_QR_TERMINATORS = ("CR", "LF", "CRLF", "none")
#: What ``sscard scan`` accepts: ``any`` (the default) takes CR, LF and CR LF alike (issue 11).
_SCAN_TERMINATORS = ("any", *_QR_TERMINATORS)


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
    stop, timed_out = threading.Event(), threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

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


def cmd_sim_qr(ctx: Context) -> int:
    """A simulated QR scanner on a pty: wait for a reader, scan CODEs, stay plugged in until Ctrl-C."""
    from sscard.sim.serial_qr import SimulatedQrScanner

    terminator = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "none": b""}[ctx.args.terminator]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SimulatedQrScanner(link=ctx.args.link) as sim:
        print(
            f"simulated QR scanner on {sim.path}; run: sscard scan --port {sim.path} "
            f"--terminator {ctx.args.terminator}; Ctrl-C unplugs it / 模拟扫码器端口 {sim.path}，按Ctrl-C拔出",
            file=ctx.err,
            flush=True,
        )
        while not stop.is_set() and not sim.wait_for_reader(timeout=0.2):
            pass  # a scan sent before a reader opens the port would be lost, as with hardware
        for code in ctx.args.codes:
            if stop.wait(ctx.args.interval):
                break
            sim.scan(code, terminator=terminator)
            print(f"scanned {len(code)} characters / 已扫码", file=ctx.err, flush=True)
        while not stop.wait(0.5):
            pass
    print("scanner unplugged / 扫码器已拔出", file=ctx.err)
    return EXIT_OK


def _systemd_unit() -> str:
    """The packaged unit (sscard/service/sscard.service), ExecStart= pointed at this installation's sscard."""
    from importlib import resources
    from pathlib import Path

    unit = resources.files("sscard.service").joinpath("sscard.service").read_text(encoding="utf-8")
    script = Path(sys.executable).with_name("sscard")
    if script.is_file():
        unit = unit.replace("ExecStart=/opt/sscard/.venv/bin/sscard serve", f"ExecStart={script} serve", 1)
    return unit


def cmd_serve(ctx: Context) -> int:
    """The local kiosk service (docs/service.md); runs until Ctrl-C/SIGTERM."""
    if ctx.args.systemd_unit:
        ctx.out.write(_systemd_unit())
        return EXIT_OK
    from sscard.readers import REPLAY_PREFIX
    from sscard.service.app import check_remote, serve

    # A replay reader answers a recorded VERIFY to any PIN: never behind a kiosk service (issue 11).
    if ctx.args.reader and ctx.args.reader.startswith(REPLAY_PREFIX):
        raise UsageError(
            "sscard serve does not run on a replay: reader (a trace cannot check a PIN); give a card reader",
            "本地服务不能使用回放读卡器（回放无法核对密码），请指定实际读卡器",
        )
    if ctx.config.reader and ctx.config.reader.startswith(REPLAY_PREFIX):
        from sscard.errors import ConfigError

        raise ConfigError(f"[reader] name {ctx.config.reader!r}: sscard serve does not run on a replay: reader")
    check_remote(ctx.args.host, ctx.args.allow_remote, ctx.config.service_token)
    print(
        f"sscard service on http://{ctx.args.host}:{ctx.args.port}/ (reader: {ctx.config.reader or 'auto'}) "
        f"/ 本地服务已启动",
        file=ctx.err,
        flush=True,
    )
    serve(ctx.config, host=ctx.args.host, port=ctx.args.port, allow_remote=ctx.args.allow_remote)
    return EXIT_OK


def cmd_completion(ctx: Context) -> int:
    """A shell completion script, generated by shtab from the whole parser (nothing at start-up)."""
    import shtab

    ctx.out.write(shtab.complete(build_parser(), ctx.args.shell))
    return EXIT_OK


#: The kiosk permission files (package data, udev/README.md) and where they are installed.
RULES_FILES = (
    ("60-sscard-ccid.rules", "etc/udev/rules.d"),
    ("61-sscard-serial.rules", "etc/udev/rules.d"),
    ("polkit/50-sscard-pcscd.rules", "etc/polkit-1/rules.d"),
)


def cmd_install_rules(ctx: Context) -> int:
    """Install the udev and polkit rules from the installed package (or print them with --print).

    docs/service.md starts from ``pip install sscard``: a wheel has no udev/ directory, so the
    rules travel as package data and this puts them where udev and polkit look.
    """
    import os
    from importlib import resources
    from pathlib import Path

    rules = resources.files("sscard").joinpath("rules")
    if ctx.args.print_rules:
        for name, folder in RULES_FILES:
            text = rules.joinpath(name).read_text(encoding="utf-8")
            print(f"# ---- /{folder}/{Path(name).name}\n{text}", file=ctx.out, end="" if text.endswith("\n") else "\n")
        return EXIT_OK
    root = Path(ctx.args.dest or "/")
    for name, folder in RULES_FILES:
        target = root / folder / Path(name).name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rules.joinpath(name).read_bytes())
            os.chmod(target, 0o644)
        except OSError as exc:  # not root, or --dest is not a directory
            raise UsageError(
                f"cannot write {target} ({exc.strerror}): run as root, or give --dest DIR or --print",
                f"无法写入{target}：请以root运行，或使用--dest或--print",
            ) from None
        print(f"installed {target} / 已安装", file=ctx.err)
    print(
        "next: groupadd --system sscard; usermod -aG sscard KIOSK-USER; udevadm control --reload-rules; "
        "udevadm trigger; systemctl restart pcscd (udev/README.md) / 后续步骤见说明文档",
        file=ctx.err,
    )
    return EXIT_OK


def cmd_record(ctx: Context) -> int:
    from sscard.files import check_private_path
    from sscard.transports.replay import RecordingTransport

    check_private_path(ctx.args.output)  # refused before the card is touched

    recorders: list[Any] = []

    def wrap(transport: Any) -> Any:
        recorder = RecordingTransport(transport, ctx.args.source or f"recorded with sscard {__version__}")
        recorders.append(recorder)
        return recorder

    try:
        with ctx.open_terminal(transport_wrapper=wrap) as terminal:
            return _run_operation(ctx, terminal)
    finally:
        # A failing operation (NOT_SSC, PIN_BLOCKED …) is worth a fixture too: save what was said.
        if recorders:
            trace = recorders[-1].trace
            trace.header["operation"] = ctx.args.operation
            trace.save(ctx.args.output)
            print(f"wrote {len(trace.exchanges)} exchanges to {ctx.args.output}", file=ctx.err)


#: The operations ``record`` runs and ``replay`` replays (a trace's ``operation`` header).
REPLAY_OPERATIONS = ("read", "verify", "pin-status")


def cmd_replay(ctx: Context) -> int:
    from sscard.readers import REPLAY_PREFIX
    from sscard.terminal import Terminal
    from sscard.transports.trace import Trace

    trace = Trace.load(ctx.args.path)
    if ctx.args.operation is None:
        ctx.args.operation = trace.header.get("operation", "read")
        if ctx.args.operation not in REPLAY_OPERATIONS:  # the file is wrong, not the command line
            from sscard.errors import TraceInvalid

            raise TraceInvalid(
                f"{ctx.args.path}: header operation {ctx.args.operation[:20]!r} is not one of {REPLAY_OPERATIONS}"
            )
    accept_any_pin = bool(ctx.args.accept_any_pin)  # tests only: a trace cannot check a PIN
    with Terminal.open(REPLAY_PREFIX + ctx.args.path, config=ctx.config, accept_any_pin=accept_any_pin) as terminal:
        status = _run_operation(ctx, terminal)
        replayed: Any = terminal.reader
        replayed.last.assert_finished()
    return status


def _run_operation(ctx: Context, terminal: Any) -> int:
    operation = ctx.args.operation
    if operation == "read":
        return _read(ctx, terminal)
    if operation == "pin-status":
        outcome = terminal.pin_status()
        ctx.emit({"pin": outcome.to_dict()}, f"PIN state: {outcome.state.value}, tries left: {outcome.tries_left}")
        return EXIT_OK
    if operation == "verify":
        terminal.check_pin_allowed()  # a replay: reader refuses before the PIN is asked for
        return _pin_result(ctx, terminal.verify(ctx.read_pin("PIN 密码: ")))
    raise UsageError(f"unknown operation {operation!r}", f"未知操作{operation}")


def cmd_demo(ctx: Context) -> int:
    """Read a real card if one is in a real reader, else the built-in demo card through pcscd + vpcd."""
    from sscard.errors import NoReader
    from sscard.terminal import Terminal
    from sscard.transports.pcsc import PcscReader, list_readers

    readers = list_readers()
    for name in readers:
        if not name.startswith(VPCD_PREFIX) and PcscReader(name).card_present():
            print(f"Reading the card in reader '{name}' / 正在读取读卡器中的卡片", file=ctx.err)
            with Terminal(PcscReader(name), config=ctx.config) as terminal:
                return _read(ctx, terminal)
    vpcd = sorted(name for name in readers if name.startswith(VPCD_PREFIX))
    if not vpcd:
        raise NoReader("no reader with a card, and pcscd has no vpcd virtual reader (Debian package vsmartcard-vpcd)")
    from sscard.sim import SimulatedCard, load_persona
    from sscard.sim.vpcd import VpcdLink

    reader = PcscReader(vpcd[0])
    persona = ctx.args.persona
    print(
        f"No card in a real reader: inserting the built-in demo card '{persona}' into '{vpcd[0]}' and reading "
        f"it through PC/SC / 未检测到实体卡，使用内置演示卡经PC/SC读取",
        file=ctx.err,
    )
    with VpcdLink(SimulatedCard(load_persona(persona)), port=VpcdLink.port_for_slot(0)) as link:
        link.insert()
        reader.wait_for_card(10)
        with Terminal(reader, config=ctx.config) as terminal:
            return _read(ctx, terminal)


def cmd_config_show(ctx: Context) -> int:
    """The effective configuration, each value with where it came from (a file, env, default)."""
    from sscard.config import effective

    config = ctx.config
    rows = effective(config)
    if ctx.json:
        values = {key.path: {"value": value, "source": origin} for key, value, origin in rows}
        print(json.dumps({"file": config.source, "values": values}, ensure_ascii=False), file=ctx.out)
        return EXIT_OK
    lines = [f"# configuration file 配置文件: {config.source or 'none 无'}"]
    section = None
    for key, value, origin in rows:
        if key.section != section:
            section = key.section
            lines.append(f"\n[{section}]")
        shown = "(not set)" if value is None else json.dumps(list(value) if isinstance(value, tuple) else value)
        lines.append(f"{key.name} = {shown}".ljust(48) + f"  # {origin}")
    print("\n".join(lines), file=ctx.out)
    return EXIT_OK


# --- parser -----------------------------------------------------------------------------------


#: The commands, for building only the one given (build_parser).
COMMANDS = frozenset(
    (
        "readers",
        "read",
        "auth-check",
        "sign-in",
        "verify",
        "pin-status",
        "change-pin",
        "sim",
        "idcard",
        "watch",
        "scan",
        "serve",
        "record",
        "replay",
        "token",
        "demo",
        "completion",
        "install-rules",
        "config",
    )
)
#: The global options, accepted before the command and after it (``sscard read -v --config x.toml``).
_GLOBAL_WITH_VALUE = ("--config",)


def _command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not a global option), or None.

    Only that command's options are built (start-up, issue 11 item 14); None builds them all.
    """
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in _GLOBAL_WITH_VALUE:
            skip = True
        elif word == "--":
            return None
        elif not word.startswith("-"):
            return word
    return None


def _exit_code_epilog() -> str:
    """The exit codes (``EXIT_CODES``), for ``sscard --help``."""
    by_status: dict[int, list[str]] = {}
    for code, status in EXIT_CODES.items():
        by_status.setdefault(status, []).append(code)
    lines = ["exit codes / 退出码:", "  0   success / 成功", "  1   internal error (a bug; rerun with -vv) / 内部错误"]
    lines.append(
        "  2   usage error / 用法错误: " + ", ".join(c for c in by_status.pop(EXIT_USAGE) if c != "USAGE_ERROR")
    )
    kinds = {
        3: "environment / 环境",
        4: "card / 卡片",
        5: "PIN / 密码",
        7: "configuration / 配置",
        8: "key service / 密钥服务",
        9: "token rejected / 令牌被拒绝",
        11: "serial devices / 串口设备",
    }
    lines += [
        f"  {status:<3} " + (f"{kinds[status]}: " if status in kinds else "") + ", ".join(codes)
        for status, codes in sorted(by_status.items())
    ]
    lines.append("  130 interrupted (Ctrl-C) / 已中断")
    lines.append("  141 standard output closed (e.g. | head) / 标准输出已关闭")
    return "\n".join(lines)


#: ``sscard read``'s options for the fast path (``_fast_read_args``): dest, then the value's type
#: and choices, or None for a flag.  tests/test_cli_startup.py checks it against build_parser().
_READ_OPTIONS: dict[str, tuple[str, Callable[[str], object] | None, tuple[object, ...] | None]] = {
    "--reader": ("reader", str, None),
    "-r": ("reader", str, None),
    "--itype": ("itype", int, (1, 2, 3, 4)),
    "--wait": ("wait", float, None),
    "--json": ("json", None, None),
    "--format": ("format", str, ("text", "json", "ireadcardbas")),
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
}


def _fast_read_args(argv: Sequence[str]) -> Any:
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
        "func": cmd_read,
        "format": "text",
    }
    for _key, (dest, kind, _choices) in _READ_OPTIONS.items():
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
        option = _READ_OPTIONS.get(word)
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only that command's options are built.

    Every command is listed (``sscard --help``, choices), but building every command's options
    costs more than the rest of a read's start-up together (~10 ms of argparse: issue 11, item 14),
    so ``main`` builds only those of the command it was given.  Each command offers only the
    options it uses; ``--config`` and ``-v`` are accepted after it too.
    """
    import argparse

    formatter = argparse.RawDescriptionHelpFormatter

    def options(*adders: Callable[[argparse.ArgumentParser], None]) -> list[argparse.ArgumentParser]:
        parents = []
        for adder in adders:
            group = argparse.ArgumentParser(add_help=False)
            adder(group)
            parents.append(group)
        return parents

    def reader_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reader", "-r", help="PC/SC reader-name substring, sim:PERSONA or replay:PATH")
        p.add_argument(
            "--itype",
            type=int,
            choices=(1, 2, 3, 4),
            help="card interface (national iType): 1 contact, 2 contactless, 3 auto contact first, 4 contactless first",
        )

    def wait_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", type=float, metavar="SECONDS", help="wait up to SECONDS for a card first")

    def json_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable JSON output")

    def read_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--format", choices=("text", "json", "ireadcardbas"), default="text", help="output form (default text)"
        )
        p.add_argument("--terminal-id", help="终端机编号 for --format ireadcardbas")
        p.add_argument("--device-id", help="终端设备号 for --format ireadcardbas")
        p.add_argument("--allow-partial", action="store_true", help="on 3.00 cards, return EF05 if EF06 is locked")

    def key_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key-service", choices=("none", "psam", "hsm", "software"), help="card authentication")
        p.add_argument("--sam-reader", help="the PSAM's reader: name substring, or sim:PSAM")

    def pin_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pin-stdin", action="store_true", help="read PIN(s) from standard input, one per line")

    def global_opts(p: argparse.ArgumentParser, *, top: bool) -> None:
        # After the command they go to other names (main merges them), so that an absent one does
        # not overwrite what was given before the command.
        suffix = "" if top else "_after"
        p.add_argument(
            "--config", dest="config" + suffix, metavar="FILE", help="configuration file (default: see docs/cli.md)"
        )
        p.add_argument(
            "-v",
            "--verbose",
            dest="verbose" + suffix,
            action="count",
            default=0,
            help="-v info, -vv debug (APDUs, redacted)",
        )
        p.add_argument(
            "--show-personal-data",
            dest="show_personal_data" + suffix,
            action="store_true",
            help="logs and -vv traces show names, SSNs, ID numbers in clear (default: masked; warns)",
        )

    parser = argparse.ArgumentParser(
        prog="sscard",
        description="Social security card (社会保障卡) reader middleware / 社会保障卡读卡中间件",
        epilog=_exit_code_epilog(),
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"sscard {__version__}")
    global_opts(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(  # noqa: PLR0917 - one call per command, read as a table
        group: Any,
        name: str,
        english: str,
        chinese: str,
        func: Callable[[Context], int] | None,
        parents: Callable[[], list[argparse.ArgumentParser]] = list,
        build: Callable[[argparse.ArgumentParser], None] | None = None,
        *,
        chosen: bool,
    ) -> Any:
        text = f"{english} / {chinese}"
        if not chosen:  # listed, with its one-line description, but its options are not built
            if command in COMMANDS:
                return None  # another known command was given: this one is not even listed
            return group.add_parser(name, help=text, description=text)
        p = group.add_parser(name, help=text, description=text, parents=parents(), formatter_class=formatter)
        if func is not None:
            global_opts(p, top=False)
            p.set_defaults(func=func)
        if build is not None:
            build(p)
        return p

    def chosen(name: str) -> bool:
        return command is None or command == name

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

    def sign_in_extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-pin", action="store_true", help="card-only sign-in (if the terminal's policy allows)")
        p.add_argument("--hold", action="store_true", help="stay until the session ends (card removed, Ctrl-C)")

    def card() -> list[argparse.ArgumentParser]:  # the options of a command that reads a card
        return options(reader_opt, wait_opt, json_opt)

    add(
        sub,
        "readers",
        "list PC/SC readers (* = card present)",
        "列出读卡器（*表示有卡）",
        cmd_readers,
        lambda: options(reader_opt, json_opt),
        chosen=chosen("readers"),
    )
    add(
        sub,
        "read",
        "read card and cardholder data",
        "读取卡片和持卡人信息",
        cmd_read,
        lambda: [*card(), *options(read_opts, key_opts)],
        read_extra,
        chosen=chosen("read"),
    )
    add(
        sub,
        "auth-check",
        "is the card genuine (internal authentication)",
        "验证卡片真伪（内部认证）",
        cmd_auth_check,
        lambda: [*card(), *options(key_opts)],
        chosen=chosen("auth-check"),
    )
    add(
        sub,
        "sign-in",
        "sign a resident in: session and token",
        "持卡人登录：会话和令牌",
        cmd_sign_in,
        lambda: [*card(), *options(pin_opts, key_opts)],
        sign_in_extra,
        chosen=chosen("sign-in"),
    )
    add(
        sub,
        "verify",
        "verify the cardholder's PIN (once; never retried)",
        "校验持卡人密码（只发送一次，不重试）",
        cmd_verify,
        lambda: [*card(), *options(pin_opts)],
        chosen=chosen("verify"),
    )
    add(
        sub,
        "pin-status",
        "tries left, without spending one",
        "查询密码剩余尝试次数（不消耗次数）",
        cmd_pin_status,
        card,
        chosen=chosen("pin-status"),
    )
    add(
        sub,
        "change-pin",
        "change the PIN (stdin: old, then new)",
        "修改密码（标准输入：先原密码，后新密码）",
        cmd_change_pin,
        lambda: [*card(), *options(pin_opts)],
        chosen=chosen("change-pin"),
    )

    def sim_commands(p: argparse.ArgumentParser) -> None:
        sim_sub = p.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
        add(sim_sub, "list", "list personas", "列出模拟卡", cmd_sim_list, lambda: options(json_opt), chosen=True)
        q = add(
            sim_sub,
            "insert",
            "insert a simulated card into pcscd's vpcd reader until Ctrl-C",
            "将模拟卡插入pcscd的vpcd虚拟读卡器，按Ctrl-C拔出",
            cmd_sim_insert,
            chosen=True,
        )
        q.add_argument("persona", nargs="?", default=DEMO_PERSONA)
        q.add_argument("--slot", type=int, default=0, help="vpcd slot (0: 'Virtual PCD 00 00', 1: '... 00 01')")
        q.add_argument("--host", default="127.0.0.1")
        q.add_argument("--port", type=int, help="vpcd TCP port (default 35963 + slot)")
        q.add_argument("--remove-after", type=int, metavar="N", help="pull the card after answering N APDUs")
        q.add_argument(
            "--remove-during", type=int, metavar="N", help="pull the card while answering APDU N (it has run it)"
        )
        q = add(
            sim_sub,
            "idcard",
            "a simulated resident ID-card reader on a pty until Ctrl-C",
            "在伪终端上模拟身份证阅读器，按Ctrl-C退出",
            cmd_sim_idcard,
            chosen=True,
        )
        q.add_argument(
            "persona", nargs="?", default=DEMO_IDCARD, help="ID-card persona or .toml path (default zhangsan)"
        )
        q.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the port, like a udev name")
        q = add(
            sim_sub,
            "qr",
            "a simulated QR scanner on a pty: scan CODEs, then stay until Ctrl-C",
            "在伪终端上模拟扫码器：依次扫码，按Ctrl-C退出",
            cmd_sim_qr,
            chosen=True,
        )
        q.add_argument("codes", nargs="+", metavar="CODE", help="codes to scan, in order")
        q.add_argument("--link", metavar="PATH", help="also reachable at PATH (a symlink, like a udev name)")
        q.add_argument("--terminator", choices=_QR_TERMINATORS, default="CR", help="what ends a scan (default CR)")
        q.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds before each code (default 1)")

    add(sub, "sim", "the built-in simulated card", "内置模拟卡", None, build=sim_commands, chosen=chosen("sim"))

    def idcard_commands(p: argparse.ArgumentParser) -> None:
        idcard_sub = p.add_subparsers(dest="idcard_command", required=True, metavar="IDCARD_COMMAND")
        q = add(
            idcard_sub,
            "read",
            "read a resident ID card: find, select, read text and photo",
            "读取居民身份证：寻卡、选卡、读文字和照片",
            cmd_idcard_read,
            lambda: options(json_opt),
            chosen=True,
        )
        q.add_argument("--port", required=True, help="serial port, e.g. /dev/sscard-idcard or /dev/ttyUSB0")
        q.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
        q.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="per command (default 3)")

    add(
        sub,
        "idcard",
        "resident ID-card reader on a serial port (docs/serial.md)",
        "串口居民身份证阅读器",
        None,
        build=idcard_commands,
        chosen=chosen("idcard"),
    )

    def watch_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reader", "-r", help="only readers whose name contains this")
        p.add_argument("--count", type=int, metavar="N", help="stop after N events")
        p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
        p.add_argument("--no-initial", action="store_true", help="do not report readers and cards already there")
        p.add_argument("--qr-port", help="also report scans of this QR scanner (default [qr] port)")

    add(
        sub,
        "watch",
        "print card and reader events as JSON lines until Ctrl-C",
        "以JSON行输出卡片和读卡器事件，按Ctrl-C结束",
        cmd_watch,
        build=watch_build,
        chosen=chosen("watch"),
    )

    def scan_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--port", required=True, help="the scanner's serial port, e.g. /dev/ttyACM0 or a udev link")
        p.add_argument("--baud", type=int, default=9600, metavar="N", help="baud rate (default 9600)")
        p.add_argument(
            "--terminator",
            choices=_SCAN_TERMINATORS,
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

    add(
        sub,
        "scan",
        "print QR credentials from a serial scanner, one line each, until Ctrl-C",
        "逐行输出串口扫码器扫到的二维码凭证，按Ctrl-C结束",
        cmd_scan,
        build=scan_build,
        chosen=chosen("scan"),
    )

    def serve_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
        p.add_argument(
            "--allow-remote",
            action="store_true",
            help="allow listening on a non-loopback address (needs [service] token)",
        )
        p.add_argument(
            "--systemd-unit", action="store_true", help="print the systemd unit for this installation and exit"
        )

    add(
        sub,
        "serve",
        "the local kiosk service: HTTP + WebSocket",
        "本地自助终端服务：HTTP和WebSocket",
        cmd_serve,
        lambda: options(reader_opt, key_opts),
        serve_build,
        chosen=chosen("serve"),
    )

    op_choices = REPLAY_OPERATIONS

    def record_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("output", help="trace file to write (docs/trace-format.md)")
        p.add_argument("--operation", choices=op_choices, default="read")
        p.add_argument("--source", help="the trace header's source line (where the card came from)")

    add(
        sub,
        "record",
        "run an operation and write its trace",
        "执行操作并记录APDU日志",
        cmd_record,
        lambda: [*card(), *options(read_opts, pin_opts)],
        record_build,
        chosen=chosen("record"),
    )

    def replay_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("path")
        p.add_argument("--operation", choices=op_choices, help="default: the trace's operation header")
        p.add_argument(
            "--accept-any-pin",
            action="store_true",
            help="for tests: let a PIN operation replay (the trace holds ** for the PIN, so any PIN matches)",
        )

    add(
        sub,
        "replay",
        "replay a trace strictly",
        "严格回放APDU日志",
        cmd_replay,
        lambda: options(json_opt, read_opts, pin_opts),
        replay_build,
        chosen=chosen("replay"),
    )

    def token_commands(p: argparse.ArgumentParser) -> None:
        token_sub = p.add_subparsers(dest="token_command", required=True, metavar="TOKEN_COMMAND")
        q = add(
            token_sub,
            "verify",
            "check a session token: signature, expiry, terminal",
            "校验会话令牌：签名、有效期、终端",
            cmd_token_verify,
            lambda: options(json_opt),
            chosen=True,
        )
        q.add_argument("token", metavar="TOKEN|-", help="the token, or - to read it from standard input")
        q.add_argument(
            "--public-key", action="append", metavar="PATH", help="trusted public key (PEM); repeat for several"
        )
        q.add_argument(
            "--terminal-id", dest="expected_terminal", metavar="ID", help="reject tokens issued by another terminal"
        )
        q.add_argument(
            "--leeway", type=float, metavar="SECONDS", help="tolerated clock skew (default [session] leeway, 30)"
        )
        q = add(
            token_sub,
            "keygen",
            "make a terminal's Ed25519 key pair for signing session tokens",
            "生成终端签发会话令牌用的Ed25519密钥对",
            cmd_token_keygen,
            lambda: options(json_opt),
            chosen=True,
        )
        q.add_argument("--private", required=True, metavar="OUT", help="private key file to write (mode 0600)")
        q.add_argument("--public", required=True, metavar="OUT", help="public key file to write")
        q.add_argument("--force", action="store_true", help="replace existing files")

    add(
        sub,
        "token",
        "session tokens: verify one offline, make a terminal key (docs/tokens.md)",
        "会话令牌：离线校验、生成终端密钥",
        None,
        build=token_commands,
        chosen=chosen("token"),
    )

    def demo_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--persona", default=DEMO_PERSONA, help="demo persona (default typical)")

    add(
        sub,
        "demo",
        "read a real card, or the demo card via pcscd+vpcd",
        "读取实体卡；没有时经pcscd和vpcd读取演示卡",
        cmd_demo,
        lambda: options(json_opt, read_opts),
        demo_build,
        chosen=chosen("demo"),
    )

    def completion_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete in")

    add(
        sub,
        "completion",
        "print a shell completion script (eval it, or save it where the shell looks)",
        "输出命令行补全脚本",
        cmd_completion,
        build=completion_build,
        chosen=chosen("completion"),
    )

    def install_rules_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--print", dest="print_rules", action="store_true", help="print the files instead")
        p.add_argument(
            "--dest",
            metavar="DIR",
            help="install under DIR instead of / (e.g. a package root); the layout below it is /etc/…",
        )

    add(
        sub,
        "install-rules",
        "install (or print) the udev and polkit rules for a non-root kiosk user",
        "安装（或输出）非root自助终端用户所需的udev和polkit规则",
        cmd_install_rules,
        build=install_rules_build,
        chosen=chosen("install-rules"),
    )

    def config_commands(p: argparse.ArgumentParser) -> None:
        config_sub = p.add_subparsers(dest="config_command", required=True, metavar="CONFIG_COMMAND")
        add(
            config_sub,
            "show",
            "print the effective configuration and where each value came from",
            "显示生效的配置及每一项的来源",
            cmd_config_show,
            lambda: options(json_opt),
            chosen=True,
        )

    add(
        sub,
        "config",
        "the configuration: the effective values and their sources",
        "配置：生效的配置值及其来源",
        None,
        build=config_commands,
        chosen=chosen("config"),
    )
    return parser


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None, stdin: TextIO | None = None
) -> int:
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _fast_read_args(argv)
    if args is None:
        parser = build_parser(_command_word(argv))
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    # -v and --config may also come after the command (build_parser): merge the two places.
    args.verbose += getattr(args, "verbose_after", 0)
    args.config = getattr(args, "config_after", None) or args.config
    args.show_personal_data = args.show_personal_data or getattr(args, "show_personal_data_after", False)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    from sscard.privacy import mask_log_records, show_personal_data

    mask_log_records()  # every log line of this process through the personal-data mask (PIPL)
    logging.basicConfig(level=level, stream=err, format="%(levelname)s %(name)s: %(message)s")
    if args.show_personal_data:
        show_personal_data(True, "--show-personal-data")
    ctx = Context(args, out, err, stdin)
    func: Callable[[Context], int] = args.func
    try:
        try:
            status = func(ctx)
        except SscardError as exc:
            status = _report(ctx, exc.to_dict(), EXIT_CODES.get(exc.code, EXIT_INTERNAL))
        out.flush()  # here, so that a closed pipe is seen now and not at the interpreter's exit
        return status
    except BrokenPipeError:
        return _stdout_closed(out)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: still no traceback unless asked for
        if args.verbose >= 2:
            raise
        payload = {"code": "INTERNAL", "message": f"internal error: {type(exc).__name__}", "message_zh": "内部错误"}
        return _report(ctx, payload, EXIT_INTERNAL)


def run() -> None:
    """The ``sscard`` console script and ``python -m sscard``: :func:`main`, then a quick exit.

    When the command is done and no other thread runs, the exit handlers run (``atexit``:
    logging's flush among them), both output streams are flushed and the process ends with
    ``os._exit``, skipping the interpreter's teardown of every module and object, which costs a
    one-shot ``sscard read`` ~10 ms, as long as its whole PC/SC exchange (issue 11, item 14).
    Everything sscard opened is closed by then (``with`` blocks); pcscd drops what a process
    leaves when its socket closes.  Tests call :func:`main`, which returns normally.
    """
    import os

    status = main()
    if threading.active_count() > 1:  # a thread still runs: let the interpreter end it as usual
        sys.exit(status)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = _stdout_closed(stream) if stream is sys.stdout else status
        except (OSError, ValueError):
            pass
    os._exit(status)


#: Exit status when standard output was closed under us (``sscard read | head -1``): what a
#: shell reports for a program that SIGPIPE ended (128 + 13), as ``cat`` and ``yes`` do.
EXIT_STDOUT_CLOSED = 141


def _stdout_closed(out: TextIO) -> int:
    """The reader of our output went away: stop quietly (no traceback, no error report).

    Python ignores SIGPIPE, so the write fails with BrokenPipeError instead; what is still
    buffered would fail again when the interpreter flushes at exit, so standard output is pointed
    at /dev/null first (the recipe of the Python docs, "Note on SIGPIPE").
    """
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
    return EXIT_STDOUT_CLOSED


def _report(ctx: Context, payload: dict[str, Any], status: int) -> int:
    if ctx.json:
        print(json.dumps({"error": payload}, ensure_ascii=False), file=ctx.out)
    else:
        code = payload["code"]
        print(f"error {code}: {payload['message']}\n错误 {code}：{payload['message_zh']}", file=ctx.err)
    return status


if __name__ == "__main__":  # pragma: no cover
    run()
