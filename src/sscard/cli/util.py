"""What every command shares: the :class:`Context`, output, tables by display width, exit codes, errors.

The exit code of an error is a column of the one error table (:data:`sscard.errors.ERROR_TABLE`,
its :class:`~sscard.errors.Category`), which the service's HTTP statuses and the national return
codes come from too.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from sscard.config import Config, load_config
from sscard.errors import ERROR_TABLE, INTERNAL, USAGE, UsageError

# argparse is imported by the parser, getpass by the PIN prompt: start-up (issue 11, item 14).
if TYPE_CHECKING:
    import argparse

    from sscard.ssc.pin import Pin

EXIT_OK = 0
EXIT_INTERNAL = INTERNAL.exit_code or 1
EXIT_USAGE = USAGE.exit_code or 2
#: Error code → exit status, every code the CLI may report (the one error table's categories;
#: a bug is INTERNAL, exit 1, and the service's own refusals never reach the CLI).
EXIT_CODES: dict[str, int] = {
    code: row.exit_code
    for code, row in ERROR_TABLE.items()
    if row.category.exit_code is not None and row.category is not INTERNAL
}

#: ``read``'s output forms (``--format``; also record's, replay's and demo's).  A national format
#: is one application's: ``ireadcardbas`` the social security card's, ``ireadbanknumber`` the bank
#: application's (sscard.cli.read.FORMAT_APPS).
READ_FORMATS = ("text", "json", "ireadcardbas", "ireadbanknumber")


class Context:
    """What every command needs: parsed options, configuration and the output streams."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: TextIO,
        err: TextIO,
        stdin: TextIO,
        full_parser: Callable[[], argparse.ArgumentParser] | None = None,
    ) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.stdin = stdin
        self._config: Config | None = None
        self._full_parser = full_parser

    def full_parser(self) -> argparse.ArgumentParser:
        """The whole parser, every command's options (``completion``); given by the entry point,
        so that no command module imports the parser that imports the command modules."""
        if self._full_parser is None:
            raise UsageError("no parser given to this context", "未提供命令行解析器")
        return self._full_parser()

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
            self.apply_logging(self._config)
        return self._config

    def apply_logging(self, config: Config | None = None) -> None:
        """Point the log at ``--log-format``/``--log-file``, else at ``[logging]`` once the
        configuration is read (options win); nothing changes while the choice stays the same."""
        args = self.args
        form = getattr(args, "log_format", None) or (config.log_format if config else "text")
        path = getattr(args, "log_file", None) or (config.log_file if config else None)
        sizes = (config.log_max_bytes, config.log_backups) if config else (None, None)
        wanted = (form, path, *sizes)
        applied = getattr(self, "_logging", None)
        if wanted == applied or (applied is None and form == "text" and path is None):
            return
        from sscard.logfmt import DEFAULT_BACKUPS, DEFAULT_MAX_BYTES, configure_logging

        max_bytes, backups = sizes
        configure_logging(
            getattr(args, "log_level", 30),
            self.err,
            form,
            path,
            max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
            backups=DEFAULT_BACKUPS if backups is None else backups,
        )
        self._logging = wanted

    def emit(self, payload: dict[str, Any], text: str) -> None:
        print(json.dumps(payload, ensure_ascii=False) if self.json else text, file=self.out)

    def read_pin(self, prompt: str) -> Pin:
        """One PIN from ``--pin-stdin`` (the next line only) or a hidden prompt; never from argv.

        Called as late as possible: by each command once the card is known to be there and to be
        a social security card (issue 11).  The digits go straight from the file descriptor into
        one ``bytearray`` (:class:`~sscard.ssc.pin.Pin`), wiped by the terminal after use.
        """
        from sscard.cli.pin import prompt_pin, read_pin_line

        if getattr(self.args, "pin_stdin", False):
            pin = read_pin_line(self.stdin)
            if pin is None:
                raise UsageError("--pin-stdin given but standard input is empty", "已指定--pin-stdin但标准输入为空")
            return pin
        if not self.stdin.isatty():
            raise UsageError(
                "no terminal for a hidden PIN prompt; pipe the PIN with --pin-stdin",
                "没有终端可用于隐藏输入密码，请使用--pin-stdin",
            )
        return prompt_pin(prompt)

    def open_terminal(self, **kwargs: Any) -> Any:
        from sscard.terminal import Terminal

        terminal = Terminal.open(self.config.reader, config=self.config, **kwargs)
        wait = getattr(self.args, "wait", None)
        if wait:
            if isatty(self.err) and not terminal.reader.card_present():
                print(
                    f"请插入社会保障卡（等待{wait:g}秒）… / Insert the card (waiting up to {wait:g} s)…",
                    file=self.err,
                    flush=True,
                )
            terminal.wait_for_card(wait)
        return terminal


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        return False


def stop_on_signals(handler: Callable[[int, object], None] | None = None) -> threading.Event:
    """An event set by SIGINT or SIGTERM (or ``handler`` called on them): how long-running commands end."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if handler is not None:
            handler(signum, frame)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    return stop


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


def warning_lines(warnings: Sequence[dict[str, Any]]) -> list[str]:
    """The ``! CODE: message / 中文`` lines under a readable table."""
    return [f"  ! {w['code']}: {w['message']} / {w['message_zh']}" for w in warnings]


def report(ctx: Context, payload: dict[str, Any], status: int) -> int:
    """An error in the JSON error form (``--json``) or as two lines on standard error."""
    if ctx.json:
        print(json.dumps({"error": payload}, ensure_ascii=False), file=ctx.out)
    else:
        code = payload["code"]
        print(f"error {code}: {payload['message']}\n错误 {code}：{payload['message_zh']}", file=ctx.err)
    return status
