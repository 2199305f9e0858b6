"""``sscard config show``: the effective configuration, each value with where it came from (docs/cli.md)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sscard.cli.util import EXIT_OK, Context

if TYPE_CHECKING:
    import argparse

    from sscard.cli.options import Builder


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


def build(b: Builder, sub: Any, name: str, text: str) -> None:
    from sscard.cli.options import json_opt

    def config_commands(p: argparse.ArgumentParser) -> None:
        config_sub = p.add_subparsers(dest="config_command", required=True, metavar="CONFIG_COMMAND")
        b.command(
            config_sub,
            "show",
            "print the effective configuration and where each value came from / 显示生效的配置及每一项的来源",
            cmd_config_show,
            b.options(json_opt),
        )

    b.command(sub, name, text, None, build=config_commands)
