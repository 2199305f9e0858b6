"""The kiosk service and its installation: ``serve`` (docs/service.md) and ``install-rules`` (udev/README.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sscard.cli.util import EXIT_OK, Context
from sscard.errors import UsageError

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder


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
    if ctx.args.systemd_socket_unit:
        from importlib import resources

        ctx.out.write(resources.files("sscard.service").joinpath("sscard.socket").read_text(encoding="utf-8"))
        return EXIT_OK
    if ctx.args.list_bridges:
        return _list_bridges(ctx)
    from sscard.readers import REPLAY_PREFIX
    from sscard.service.app import check_metrics_port, check_remote, serve

    config = ctx.config
    if ctx.args.bridge:
        config = config.with_overrides(**_bridge_option(ctx.args.bridge))

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
    if config.bridge_profile:  # a broken profile stops here, before the service says it started
        from sscard.service.bridge_profiles import load_profile

        load_profile(config.bridge_profile)
    port = ctx.args.port or ctx.config.service_port  # --port, else [service] port (8765)
    if ctx.args.metrics_port is not None:
        check_metrics_port(port, ctx.args.metrics_port)
        check_remote(ctx.args.metrics_host or ctx.args.host, ctx.args.allow_remote, ctx.config.service_token)
    print(
        f"sscard service on http://{ctx.args.host}:{port}/ (reader: {ctx.config.reader or 'auto'}) / 本地服务已启动",
        file=ctx.err,
        flush=True,
    )
    socket_path = ctx.args.socket or ctx.config.service_socket
    if socket_path:
        print(f"national-interface socket {socket_path} / 国家标准接口套接字已启用", file=ctx.err, flush=True)
    if config.bridge_profile:
        shown = f"{config.bridge_profile}" + (f" port {config.bridge_port}" if config.bridge_port else "")
        print(f"vendor bridge {shown} / 厂商接口桥已启用", file=ctx.err, flush=True)
    if ctx.args.metrics_port is not None:
        where = f"{ctx.args.metrics_host or ctx.args.host}:{ctx.args.metrics_port}"
        print(f"metrics for scrapers on http://{where}/metrics / 监控指标端口已启用", file=ctx.err, flush=True)
    serve(
        config,
        host=ctx.args.host,
        port=port,
        allow_remote=ctx.args.allow_remote,
        socket_path=socket_path,
        metrics_port=ctx.args.metrics_port,
        metrics_host=ctx.args.metrics_host,
    )
    return EXIT_OK


def _bridge_option(text: str) -> dict[str, object]:
    """``--bridge PROFILE[:PORT]`` as Config overrides (a PORT is digits after the last colon)."""
    name, colon, port = text.rpartition(":")
    if colon and port.isdigit():
        if not name or not 1 <= int(port) <= 65_535:
            raise UsageError(
                f"--bridge {text!r}: PROFILE[:PORT], the port 1 to 65535",
                "--bridge的格式为 配置名[:端口]，端口为1到65535",
            )
        return {"bridge_profile": name, "bridge_port": int(port)}
    return {"bridge_profile": text}


def _list_bridges(ctx: Context) -> int:
    """The shipped vendor-bridge profiles: name, transport, port, path and what they answer."""
    from sscard.service.bridge_profiles import bundled, load_profile

    for name in bundled():
        p = load_profile(name)
        print(f"{p.name:<12} {p.transport:<9} {p.port:>5} {p.path:<11} {p.description}", file=ctx.out)
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


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import key_opts, reader_opt

    def serve_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default [service] port, 8765)")
        p.add_argument(
            "--allow-remote",
            action="store_true",
            help="allow listening on a non-loopback address (needs [service] token)",
        )
        p.add_argument(
            "--systemd-unit", action="store_true", help="print the systemd unit for this installation and exit"
        )
        p.add_argument(
            "--socket",
            metavar="PATH",
            help="also answer libSSCardDriver.so on this Unix-domain socket (default [service] socket; docs/native.md)",
        )
        p.add_argument(
            "--bridge",
            metavar="PROFILE[:PORT]",
            help="also answer a vendor bridge's messages on its port (default [bridge] profile; see --list-bridges)",
        )
        p.add_argument("--list-bridges", action="store_true", help="list the shipped vendor-bridge profiles and exit")
        p.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="also listen on PORT for scrapers: only /metrics, /healthz and /readyz there (docs/fleet.md)",
        )
        p.add_argument(
            "--metrics-host",
            metavar="HOST",
            help="address of the --metrics-port listener (default: --host; beyond loopback needs --allow-remote)",
        )
        p.add_argument(
            "--systemd-socket-unit",
            action="store_true",
            help="print the systemd socket unit (sscard.socket, /run/sscard/sscard.sock) and exit",
        )

    def install_rules_build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--print", dest="print_rules", action="store_true", help="print the files instead")
        p.add_argument(
            "--dest",
            metavar="DIR",
            help="install under DIR instead of / (e.g. a package root); the layout below it is /etc/…",
        )

    if name == "serve":
        b.command(sub, name, text, cmd_serve, b.options(reader_opt, key_opts), serve_build)
    elif name == "install-rules":
        b.command(sub, name, text, cmd_install_rules, build=install_rules_build)
