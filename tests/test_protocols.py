"""Every hook the layers above use is in the Transport/Reader protocols, implemented by every source.

Issue 12: the terminal and the service used to probe readers and transports with ``getattr``
(``event_source``, ``reset_and_close``, ``accepts_pin``, ``.last.assert_finished``); a source that
lacked a hook then silently behaved differently.  Now each source answers each hook, with a no-op
where it does not apply, and no module of ``src/`` probes for a protocol member by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sscard.errors import TraceMismatch
from sscard.sim import SimulatedCard, load_persona
from sscard.transports.base import Reader, Transport, event_factory
from sscard.transports.replay import ReplayReader
from sscard.transports.sim import SimReader

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "typical-read.apdu"

#: The protocols' members: nothing in src/ may ask getattr/hasattr for one of these by name.
HOOKS = frozenset(
    name
    for protocol in (Reader, Transport)
    for name in vars(protocol)
    if not name.startswith("_") and name not in ("name",)
)
#: getattr probes in code another helper is moving at the same time (issue 12, the service split).
#: INTEGRATOR: replace service/app.py's probe with ``event_factory(self.terminal.reader)`` and
#: delete this entry; no other may be added.
KNOWN_PROBES: frozenset[tuple[str, str]] = frozenset()


def probes(source: str) -> list[tuple[int, str]]:
    """``getattr(x, "hook", ...)`` / ``hasattr(x, "hook")`` calls naming a protocol hook."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in HOOKS
        ):
            found.append((node.lineno, str(node.args[1].value)))
    return found


def test_the_hooks_are_in_the_protocols() -> None:
    assert {"event_source", "accepts_pin", "last", "reset_and_close", "assert_finished"} <= HOOKS


def test_no_module_probes_for_a_protocol_hook() -> None:
    found = [
        f"{path.relative_to(ROOT / 'src')}:{line} probes {hook!r}"
        for path in sorted((ROOT / "src" / "sscard").rglob("*.py"))
        for line, hook in probes(path.read_text(encoding="utf-8"))
        if (str(path.relative_to(ROOT / "src")), hook) not in KNOWN_PROBES
    ]
    assert not found, "\n".join(found)


def test_the_probe_finder_finds_probes() -> None:
    assert probes('getattr(reader, "event_source", None)\nhasattr(t, "reset_and_close")') == [
        (1, "event_source"),
        (2, "reset_and_close"),
    ]


def test_a_simulated_reader_answers_every_hook() -> None:
    reader = SimReader(SimulatedCard(load_persona("typical")), name="sim:typical")
    assert isinstance(reader, Reader) and reader.accepts_pin and reader.last is None
    assert reader.event_source() is not None and event_factory(reader) is not None
    assert reader.recorded_header is None  # a card, not a recording
    transport = reader.connect()
    assert isinstance(transport, Transport) and reader.last is transport
    transport.assert_finished()  # a live card has no leftovers: a no-op
    transport.reset_and_close()


def test_a_replay_reader_has_no_events_and_refuses_pins_unless_a_test_opts_in() -> None:
    reader = ReplayReader(FIXTURE)
    assert isinstance(reader, Reader) and reader.event_source() is None and event_factory(reader) is None
    assert not reader.accepts_pin and ReplayReader(FIXTURE, accept_any_pin=True).accepts_pin
    assert reader.recorded_header is not None and reader.recorded_header["operation"] == "read"
    transport = reader.connect()
    assert reader.last is transport
    with pytest.raises(TraceMismatch):
        transport.assert_finished()  # nothing replayed yet: every exchange is left over
    transport.reset_and_close()  # a replay cannot reset a card: a plain close
