"""The layering of docs/architecture.md, enforced on the source (parsed with ``ast``, never imported).

Layers, bottom to top; a module may import its own layer or lower ones, never a higher one:

    0  sscard, sscard.errors                    one error hierarchy under everything
    1  sscard.transports.*                      bytes to and from a card
    2  sscard.apdu.*                            commands, status words, processors
    3  sscard.ssc.*, sscard.psam.*, .bank.*    card applications
    4  sscard.terminal, .config, .national,     the facade kiosk software calls
       .events, .session, .readers
    5  sscard.cli*, sscard.service.*            front ends

``sscard.sim`` (the simulated card: the other side of the wire) stands beside the stack: it may
import only what a card needs to speak APDUs, and only the facade wiring and the front ends may
import it.  Third-party libraries stay where STYLE.md puts them (pyscard in the PC/SC adapter,
construct in the record parser, the CLI framework in the CLI).

Every import counts, also one inside a function or under ``if TYPE_CHECKING``, and so does
``importlib.import_module("literal")``.  A new module that matches no rule fails the test until it
is given a place in ``LAYERS`` (and in docs/architecture.md).
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sscard"

#: (pattern, layer); fnmatch patterns over dotted module names, first match wins.
LAYERS: tuple[tuple[str, int], ...] = (
    ("sscard", 0),
    ("sscard.errors", 0),
    ("sscard.files", 0),
    ("sscard.privacy", 0),
    ("sscard.transports", 1),
    ("sscard.transports.*", 1),
    ("sscard.apdu", 2),
    ("sscard.apdu.*", 2),
    ("sscard.ssc", 3),
    ("sscard.ssc.*", 3),
    ("sscard.psam", 3),
    ("sscard.psam.*", 3),
    ("sscard.qr", 3),
    ("sscard.qr.*", 3),
    ("sscard.idcard", 3),
    ("sscard.idcard.*", 3),
    ("sscard.bank", 3),
    ("sscard.bank.*", 3),
    ("sscard.health", 3),
    ("sscard.health.*", 3),
    ("sscard.terminal", 4),
    ("sscard.config", 4),
    ("sscard.national", 4),
    ("sscard.events", 4),
    ("sscard.session", 4),
    ("sscard.tokens", 4),
    ("sscard.credentials", 4),
    ("sscard.readers", 4),
    ("sscard.cli", 5),
    ("sscard.__main__", 5),  # python -m sscard: calls sscard.cli.main
    ("sscard.cli.*", 5),
    ("sscard.cli_*", 5),
    ("sscard.service", 5),
    ("sscard.service.*", 5),
    ("sscard.native_socket", 5),  # the socket libSSCardDriver.so talks to (docs/native.md)
)
LAYER_NAMES = ("errors", "transports", "apdu", "card applications", "facade", "front ends")

SIM = ("sscard.sim", "sscard.sim.*")
#: What the simulated card may import from sscard: the APDU value types, the status words, the
#: trace format, the errors, and itself.
SIM_MAY_IMPORT = ("sscard.errors", "sscard.apdu.command", "sscard.apdu.sw", "sscard.transports.trace", *SIM)
#: Who may import the simulator: the facade's reader wiring, the front ends, and the simulator itself.
MAY_IMPORT_SIM = (
    "sscard.terminal",
    "sscard.readers",
    "sscard.cli",
    "sscard.cli.*",
    "sscard.cli_*",
    "sscard.service",
    "sscard.service.*",
    *SIM,
)

#: Third-party top-level package -> the only sscard modules that may import it.
THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "smartcard": ("sscard.transports.pcsc", "sscard.transports.pcsc_*", "sscard.transports.pcsc.*"),
    "serial": ("sscard.transports.serial", "sscard.transports.serial_*", "sscard.transports.serial.*"),
    "argparse": ("sscard.cli", "sscard.cli.*", "sscard.cli_*"),
    "click": ("sscard.cli", "sscard.cli.*", "sscard.cli_*"),
    "construct": ("sscard.ssc.records", "sscard.ssc.formats", "sscard.ssc.formats_*", "sscard.ssc.formats.*"),
}


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns)


def layer_of(module: str) -> int | None:
    for pattern, layer in LAYERS:
        if fnmatch.fnmatchcase(module, pattern):
            return layer
    return None


def is_sim(module: str) -> bool:
    return _matches(module, SIM)


@dataclass(frozen=True)
class Import:
    target: str  # dotted name of the module imported (a package's name for ``from pkg import name``)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SRC / PACKAGE).rglob("*.py"))}


def imports_of(module: str, source: str, is_package: bool, known: frozenset[str]) -> Iterator[Import]:
    """Every import in ``source``, anywhere in the tree, with relative names resolved.

    ``from pkg import name`` imports ``pkg.name`` when that is a module of the tree, else ``pkg``.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield Import(candidate if candidate in known else base, node.lineno)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            yield Import(node.args[0].value, node.lineno)


def violations(module: str, source: str, is_package: bool = False, known: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with the imports of ``module`` (whose text is ``source``); empty when nothing."""
    found: list[str] = []
    own_layer = layer_of(module)
    if own_layer is None and not is_sim(module):
        found.append(
            f"{module} is not classified: give it a layer in LAYERS (tests/test_architecture.py) "
            "and a line in docs/architecture.md"
        )
    for imp in imports_of(module, source, is_package, known):
        where = f"{module}:{imp.line} imports {imp.target}"
        top = imp.target.partition(".")[0]
        if top in THIRD_PARTY and not _matches(module, THIRD_PARTY[top]):
            found.append(f"{where}: only {', '.join(THIRD_PARTY[top])} may import {top}")
        if top != PACKAGE:
            continue
        if is_sim(module):
            if not _matches(imp.target, SIM_MAY_IMPORT):
                found.append(f"{where}: the simulator may import only {', '.join(SIM_MAY_IMPORT[:4])} and itself")
            continue
        if is_sim(imp.target):
            if not _matches(module, MAY_IMPORT_SIM):
                found.append(f"{where}: only the facade wiring and front ends may import the simulator")
            continue
        target_layer = layer_of(imp.target)
        if target_layer is None:
            found.append(f"{where}: {imp.target} is not classified in LAYERS")
        elif own_layer is not None and target_layer > own_layer:
            found.append(
                f"{where}: layer {own_layer} ({LAYER_NAMES[own_layer]}) may not import "
                f"layer {target_layer} ({LAYER_NAMES[target_layer]})"
            )
    return found


MODULES = source_modules()
KNOWN = frozenset(MODULES)


def test_the_tree_is_found() -> None:
    # Guards against a moved src/ making every other test here pass vacuously.
    assert {"sscard", "sscard.errors", "sscard.apdu.command", "sscard.transports.base"} <= KNOWN


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_respects_the_layers(module: str) -> None:
    path = MODULES[module]
    source = path.read_text(encoding="utf-8")
    problems = violations(module, source, is_package=path.name == "__init__.py", known=KNOWN)
    assert not problems, "\n".join(problems)


# --- the rule table itself catches violations -----------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("sscard.apdu.command", "from sscard.ssc.records import Person", "layer 2 (apdu) may not import layer 3"),
        ("sscard.transports.base", "import sscard.apdu", "layer 1 (transports) may not import layer 2"),
        ("sscard.errors", "def f():\n    from sscard.transports import trace\n", "layer 0 (errors) may not import"),
        ("sscard.ssc.application", "from ..terminal import Terminal", "imports sscard.terminal: layer 3"),
        ("sscard.terminal", "from sscard.cli import main", "layer 4 (facade) may not import layer 5"),
        ("sscard.apdu.processors", "import importlib\nimportlib.import_module('sscard.readers')", "layer 2"),
        ("sscard.transports.sim", "from sscard.sim import SimulatedCard", "may import the simulator"),
        ("sscard.sim.card", "from sscard.apdu.processors import transceive", "the simulator may import only"),
        ("sscard.sim.card", "from sscard.apdu import Command", "imports sscard.apdu: the simulator"),
        ("sscard.sim.card", "from sscard.ssc.records import Person", "the simulator may import only"),
        ("sscard.ssc.application", "def f():\n    import smartcard.System\n", "may import smartcard"),
        ("sscard.transports.replay", "from smartcard.scard import SCardConnect", "may import smartcard"),
        ("sscard.terminal", "import serial", "may import serial"),
        ("sscard.service.http", "import argparse", "may import argparse"),
        ("sscard.terminal", "import click", "may import click"),
        ("sscard.terminal", "import construct as cs", "may import construct"),
        ("sscard.ssc.application", "from construct import Struct", "may import construct"),
        ("sscard.gadgets", "", "sscard.gadgets is not classified"),
        ("sscard.terminal", "from sscard.gadgets import x", "sscard.gadgets is not classified in LAYERS"),
    ],
)
def test_rules_catch(module: str, source: str, expected: str) -> None:
    problems = violations(module, source, known=KNOWN)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("sscard.transports.pcsc", "from smartcard.System import readers"),
        ("sscard.transports.pcsc_monitor", "import smartcard"),
        ("sscard.transports.serial_reader", "import serial"),
        ("sscard.cli", "import argparse\nfrom sscard.sim import load_persona\nfrom sscard.terminal import T"),
        ("sscard.ssc.records", "import construct as cs\nfrom sscard.errors import BadRecord"),
        ("sscard.ssc.formats", "import construct"),
        ("sscard.readers", "from sscard.sim import SimulatedCard\nfrom sscard.transports.sim import SimReader"),
        ("sscard.sim.card", "from sscard.apdu.command import Command\nfrom sscard.apdu.sw import SW"),
        ("sscard.sim.card", "from sscard.transports.trace import redact_command\nfrom . import personas"),
        ("sscard.sim", "from .card import SimulatedCard\nfrom sscard.errors import ConfigError"),
        ("sscard.apdu.processors", "from ..transports.base import Transport\nfrom . import sw"),
        ("sscard.terminal", "from sscard.ssc.application import SscApplication\nimport sscard.config"),
    ],
)
def test_rules_allow(module: str, source: str) -> None:
    assert violations(module, source, is_package=module == "sscard.sim", known=KNOWN) == []


def test_relative_imports_resolve_against_the_package() -> None:
    found = list(imports_of("sscard.apdu", "from . import sw\nfrom ..errors import X", True, KNOWN))
    assert [imp.target for imp in found] == ["sscard.apdu.sw", "sscard.errors"]
    found = list(imports_of("sscard.apdu.sw", "from . import command\nfrom .. import errors", False, KNOWN))
    assert [imp.target for imp in found] == ["sscard.apdu.command", "sscard.errors"]
