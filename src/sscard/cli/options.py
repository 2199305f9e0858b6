"""The parser's building blocks: option groups shared by several commands and :class:`Builder`.

argparse is imported by :mod:`sscard.cli.parser` only when a parser is built (start-up, issue 11
item 14); the command-family modules call these from their ``build`` functions, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from sscard.cli.util import Context

Adder = Callable[["argparse.ArgumentParser"], None]


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
    from sscard.cardapp import APPLICATIONS
    from sscard.cli.util import READ_FORMATS

    p.add_argument(
        "--app",
        choices=APPLICATIONS.names,
        help="read this card application only (default: whichever the card carries, the SSC first)",
    )
    p.add_argument(
        "--format",
        choices=READ_FORMATS,
        default="text",
        help="output form (default text; ireadcardbas: the SSC's, ireadbanknumber: the bank application's)",
    )
    p.add_argument("--terminal-id", help="终端机编号 for --format ireadcardbas")
    p.add_argument("--device-id", help="终端设备号 for --format ireadcardbas")
    p.add_argument("--allow-partial", action="store_true", help="on 3.00 SSCs, return EF05 if EF06 is locked")


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
    from sscard.logfmt import LOG_FORMATS

    p.add_argument(
        "--log-format",
        dest="log_format" + suffix,
        choices=LOG_FORMATS,
        help="log lines as text (default, journald-friendly) or json, one object per line (docs/cli.md)",
    )
    p.add_argument(
        "--log-file",
        dest="log_file" + suffix,
        metavar="PATH",
        help="write the log to PATH (0600, rotated: [logging] max_bytes, backups) instead of standard error",
    )
    p.add_argument(
        "--show-personal-data",
        dest="show_personal_data" + suffix,
        action="store_true",
        help="logs and -vv traces show names, SSNs, ID numbers in clear (default: masked; warns)",
    )


class Builder:
    """Builds commands' parsers for :func:`sscard.cli.parser.build_parser` and the family modules."""

    def __init__(self, argparse_module: Any) -> None:
        self.argparse = argparse_module
        self.formatter = argparse_module.RawDescriptionHelpFormatter

    def options(self, *adders: Adder) -> list[argparse.ArgumentParser]:
        """Parent parsers, one per option group (argparse copies their options into a command)."""
        parents = []
        for adder in adders:
            group = self.argparse.ArgumentParser(add_help=False)
            adder(group)
            parents.append(group)
        return parents

    def card(self) -> list[argparse.ArgumentParser]:
        """The options of a command that reads a card."""
        return self.options(reader_opt, wait_opt, json_opt)

    def command(  # noqa: PLR0917 - one call per command, read as a table
        self,
        group: Any,
        name: str,
        text: str,
        func: Callable[[Context], int] | None,
        parents: Sequence[argparse.ArgumentParser] = (),
        build: Adder | None = None,
    ) -> argparse.ArgumentParser:
        """One (sub)command: its one-line ``English / 中文`` text, its function and options."""
        p: argparse.ArgumentParser = group.add_parser(
            name, help=text, description=text, parents=list(parents), formatter_class=self.formatter
        )
        if func is not None:
            global_opts(p, top=False)
            p.set_defaults(func=func)
        if build is not None:
            build(p)
        return p
