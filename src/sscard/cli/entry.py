"""The entry point: :func:`main` parses, runs the command and reports its errors.

A plain ``read`` is parsed by its fast path, anything else by argparse.

Errors print their stable code and the English and Chinese messages — never a traceback (``-vv``
shows one for bug reports); the exit status is the error's row of the one error table.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TextIO

from sscard.cli.util import EXIT_INTERNAL, EXIT_USAGE, Context, report
from sscard.errors import SscardError

#: The global options, accepted before the command and after it (``sscard read -v --config x.toml``).
_GLOBAL_WITH_VALUE = ("--config", "--log-format", "--log-file")


def command_word(argv: Sequence[str]) -> str | None:
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


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None, stdin: TextIO | None = None
) -> int:
    out, err, stdin = out or sys.stdout, err or sys.stderr, stdin or sys.stdin
    argv = sys.argv[1:] if argv is None else list(argv)
    command = command_word(argv)
    args = None
    if command == "read":  # a plain read is parsed without argparse (sscard.cli.read.fast_read_args)
        from sscard.cli.read import fast_read_args

        args = fast_read_args(argv)
    if args is None:
        from sscard.cli.parser import build_parser

        parser = build_parser(command)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
        full_parser = build_parser
    else:
        full_parser = None
    # -v and --config may also come after the command (build_parser): merge the two places.
    args.verbose += getattr(args, "verbose_after", 0)
    args.config = getattr(args, "config_after", None) or args.config
    args.show_personal_data = args.show_personal_data or getattr(args, "show_personal_data_after", False)
    args.log_format = getattr(args, "log_format_after", None) or getattr(args, "log_format", None)
    args.log_file = getattr(args, "log_file_after", None) or getattr(args, "log_file", None)
    args.log_level = level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    from sscard.privacy import mask_log_records, show_personal_data

    mask_log_records()  # every log line of this process through the personal-data mask (PIPL)
    ctx = Context(args, out, err, stdin, full_parser)
    func: Callable[[Context], int] = args.func
    try:
        try:
            if args.log_format or args.log_file:  # --log-format / --log-file (docs/cli.md "Logs")
                ctx.apply_logging()
            else:  # the journald-friendly text, as it always was
                from sscard.logfmt import configure_logging

                configure_logging(level, err)
            if args.show_personal_data:
                show_personal_data(True, "--show-personal-data")
            status = func(ctx)
        except SscardError as exc:
            status = report(ctx, exc.to_dict(), exc.row.exit_code)
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
        return report(ctx, payload, EXIT_INTERNAL)


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
