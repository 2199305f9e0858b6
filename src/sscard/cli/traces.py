"""Traces: ``record`` an operation's APDU exchange, ``replay`` one strictly (docs/trace-format.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sscard import __version__
from sscard.cardapp import APPLICATIONS_HEADER, applications_header
from sscard.cli.cards import pin_result
from sscard.cli.read import read_app, read_card
from sscard.cli.util import EXIT_OK, Context
from sscard.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder


def cmd_record(ctx: Context) -> int:
    from sscard.files import check_private_path
    from sscard.transports.replay import RecordingTransport

    app = _check_app(ctx)
    check_private_path(ctx.args.output)  # refused before the card is touched

    recorders: list[Any] = []
    applications: list[str] = []

    def wrap(transport: Any) -> Any:
        recorder = RecordingTransport(transport, ctx.args.source or f"recorded with sscard {__version__}")
        recorders.append(recorder)
        return recorder

    try:
        with ctx.open_terminal(transport_wrapper=wrap) as terminal:
            if ctx.args.operation == "read":
                # What this read will ask, in order: a replay asks exactly these (docs/trace-format.md).
                applications.append(applications_header(terminal.applications, app))
            return _run_operation(ctx, terminal)
    finally:
        # A failing operation (NOT_SSC, PIN_BLOCKED …) is worth a fixture too: save what was said.
        if recorders:
            trace = recorders[-1].trace
            trace.header["operation"] = ctx.args.operation
            if applications:
                trace.header[APPLICATIONS_HEADER] = applications[0]
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
    _check_app(ctx)
    accept_any_pin = bool(ctx.args.accept_any_pin)  # tests only: a trace cannot check a PIN
    with Terminal.open(REPLAY_PREFIX + ctx.args.path, config=ctx.config, accept_any_pin=accept_any_pin) as terminal:
        status = _run_operation(ctx, terminal)
        last = terminal.reader.last
        if last is not None:
            last.assert_finished()
    return status


def _check_app(ctx: Context) -> str | None:
    """``--app`` is for reads; with ``--operation read``, the application to read (:func:`read_app`,
    which refuses an option that cannot apply to it), before a file or the card is touched."""
    if ctx.args.operation not in (None, "read"):
        if ctx.args.app is not None:
            raise UsageError("--app applies to --operation read only", "--app仅适用于读卡操作（--operation 'read'）")
        return None
    return read_app(ctx)


def _run_operation(ctx: Context, terminal: Any) -> int:
    operation = ctx.args.operation
    if operation == "read":
        return read_card(ctx, terminal)
    if operation == "pin-status":
        outcome = terminal.pin_status()
        ctx.emit({"pin": outcome.to_dict()}, f"PIN state: {outcome.state.value}, tries left: {outcome.tries_left}")
        return EXIT_OK
    if operation == "verify":
        terminal.check_pin_allowed()  # a replay: reader refuses before the PIN is asked for
        return pin_result(ctx, terminal.verify(ctx.read_pin("PIN 密码: ")))
    raise UsageError(f"unknown operation {operation!r}", f"未知操作{operation}")


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt, pin_opts, read_opts

    def record_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("output", help="trace file to write (docs/trace-format.md)")
        p.add_argument("--operation", choices=REPLAY_OPERATIONS, default="read")
        p.add_argument("--source", help="the trace header's source line (where the card came from)")

    def replay_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("path")
        p.add_argument("--operation", choices=REPLAY_OPERATIONS, help="default: the trace's operation header")
        p.add_argument(
            "--accept-any-pin",
            action="store_true",
            help="for tests: let a PIN operation replay (the trace holds ** for the PIN, so any PIN matches)",
        )

    if name == "record":
        b.command(sub, name, text, cmd_record, [*b.card(), *b.options(read_opts, pin_opts)], record_build)
    elif name == "replay":
        b.command(sub, name, text, cmd_replay, b.options(json_opt, read_opts, pin_opts), replay_build)
