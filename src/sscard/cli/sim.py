"""``sscard sim``: the simulators.

The built-in simulated card in pcscd's vpcd reader; a simulated ID-card reader and QR scanner on ptys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sscard.cli.cards import DEMO_PERSONA
from sscard.cli.util import EXIT_OK, Context, stop_on_signals

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder

DEMO_IDCARD = "zhangsan"


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
    stop = stop_on_signals()
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


def cmd_sim_idcard(ctx: Context) -> int:
    """A simulated ID-card reader on a pty with the persona's card on it, until Ctrl-C/SIGTERM."""
    from sscard.sim.serial_idcard import SimulatedIdCardReader, load_idcard

    persona = load_idcard(ctx.args.persona)
    stop = stop_on_signals()
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


def cmd_sim_qr(ctx: Context) -> int:
    """A simulated QR scanner on a pty: wait for a reader, scan CODEs, stay plugged in until Ctrl-C."""
    from sscard.qr import TERMINATORS
    from sscard.sim.serial_qr import SimulatedQrScanner

    terminator = TERMINATORS[ctx.args.terminator]
    stop = stop_on_signals()
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


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt
    from sscard.qr import TERMINATORS

    def sim_commands(p: argparse.ArgumentParser) -> None:
        sim_sub = p.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
        b.command(sim_sub, "list", "list personas / 列出模拟卡", cmd_sim_list, b.options(json_opt))
        q = b.command(
            sim_sub,
            "insert",
            "insert a simulated card into pcscd's vpcd reader until Ctrl-C"
            " / 将模拟卡插入pcscd的vpcd虚拟读卡器，按Ctrl-C拔出",
            cmd_sim_insert,
        )
        q.add_argument("persona", nargs="?", default=DEMO_PERSONA)
        q.add_argument("--slot", type=int, default=0, help="vpcd slot (0: 'Virtual PCD 00 00', 1: '... 00 01')")
        q.add_argument("--host", default="127.0.0.1")
        q.add_argument("--port", type=int, help="vpcd TCP port (default 35963 + slot)")
        q.add_argument("--remove-after", type=int, metavar="N", help="pull the card after answering N APDUs")
        q.add_argument(
            "--remove-during", type=int, metavar="N", help="pull the card while answering APDU N (it has run it)"
        )
        q = b.command(
            sim_sub,
            "idcard",
            "a simulated resident ID-card reader on a pty until Ctrl-C / 在伪终端上模拟身份证阅读器，按Ctrl-C退出",
            cmd_sim_idcard,
        )
        q.add_argument(
            "persona", nargs="?", default=DEMO_IDCARD, help="ID-card persona or .toml path (default zhangsan)"
        )
        q.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the port, like a udev name")
        q = b.command(
            sim_sub,
            "qr",
            "a simulated QR scanner on a pty: scan CODEs, then stay until Ctrl-C"
            " / 在伪终端上模拟扫码器：依次扫码，按Ctrl-C退出",
            cmd_sim_qr,
        )
        q.add_argument("codes", nargs="+", metavar="CODE", help="codes to scan, in order")
        q.add_argument("--link", metavar="PATH", help="also reachable at PATH (a symlink, like a udev name)")
        # A simulated scanner ends its scans one way ("any" is what a reader accepts, not a way to send).
        sent = tuple(name for name in TERMINATORS if name != "any")
        q.add_argument("--terminator", choices=sent, default="CR", help="what ends a scan (default CR)")
        q.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds before each code (default 1)")

    b.command(sub, name, text, None, build=sim_commands)
