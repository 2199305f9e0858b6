"""Card operations besides ``read``.

``readers``, ``auth-check``, ``sign-in``, ``verify``, ``pin-status``, ``change-pin``, ``demo``.

PINs are asked for as late as possible (:func:`sscard.cli.pin.pin_card_ready` first), read by
:meth:`~sscard.cli.util.Context.read_pin`, and sent once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sscard.cli.pin import pin_card_ready
from sscard.cli.read import read_card
from sscard.cli.util import EXIT_OK, Context, stop_on_signals
from sscard.errors import PinMismatch

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder

DEMO_PERSONA = "typical"
VPCD_PREFIX = "Virtual PCD"


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
            done = stop_on_signals()
            while not done.is_set() and terminal.session is not None:
                terminal.sessions.wait_ended(0.5)
            if terminal.session is not None:
                terminal.sign_out()
            for event in ended:
                print(json.dumps(event.to_json(), ensure_ascii=False), file=ctx.out, flush=True)
    return EXIT_OK


def pin_result(ctx: Context, outcome: Any) -> int:
    if not outcome.ok:
        outcome.raise_for_error()
    ctx.emit({"pin": outcome.to_dict()}, "PIN verified. 密码验证成功。")
    return EXIT_OK


def cmd_verify(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        pin_card_ready(terminal)
        return pin_result(ctx, terminal.verify(ctx.read_pin("PIN 密码: ")))


def cmd_pin_status(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        outcome = terminal.pin_status()
    left = "unknown 未知" if outcome.tries_left is None else str(outcome.tries_left)
    ctx.emit({"pin": outcome.to_dict()}, f"PIN state 密码状态: {outcome.state.value}; tries left 剩余次数: {left}")
    return EXIT_OK


def cmd_change_pin(ctx: Context) -> int:
    with ctx.open_terminal() as terminal:
        pin_card_ready(terminal)
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
                return read_card(ctx, terminal)
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
            return read_card(ctx, terminal)


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt, key_opts, pin_opts, read_opts, reader_opt

    def sign_in_extra(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-pin", action="store_true", help="card-only sign-in (if the terminal's policy allows)")
        p.add_argument("--hold", action="store_true", help="stay until the session ends (card removed, Ctrl-C)")

    def demo_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--persona", default=DEMO_PERSONA, help="demo persona (default typical)")

    if name == "readers":
        b.command(sub, name, text, cmd_readers, b.options(reader_opt, json_opt))
    elif name == "auth-check":
        b.command(sub, name, text, cmd_auth_check, [*b.card(), *b.options(key_opts)])
    elif name == "sign-in":
        b.command(sub, name, text, cmd_sign_in, [*b.card(), *b.options(pin_opts, key_opts)], sign_in_extra)
    elif name == "verify":
        b.command(sub, name, text, cmd_verify, [*b.card(), *b.options(pin_opts)])
    elif name == "pin-status":
        b.command(sub, name, text, cmd_pin_status, b.card())
    elif name == "change-pin":
        b.command(sub, name, text, cmd_change_pin, [*b.card(), *b.options(pin_opts)])
    elif name == "demo":
        b.command(sub, name, text, cmd_demo, b.options(json_opt, read_opts), demo_build)
