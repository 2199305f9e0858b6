"""Lint the kiosk permission files in ``udev/``: udev rules for readers and serial devices, and the
polkit rule for pcscd.  No pcscd, udev or root needed.

The linter below follows ``udev(7)`` and systemd's rules parser (``src/udev/udev-rules.c``): how a
logical line is assembled (``\\`` continuations, ``#`` comments even inside a continuation), how a
``KEY{attr} OP "value"`` token is read, which keys exist, which take an ``{attr}``, and which
operators each key accepts.  Where udev only *warns* and guesses (``GROUP+=`` "assuming '='",
``ENV:=``, a missing comma, an unused LABEL) the linter reports a problem: these files are ours
and should not need udev to guess.  ``test_linter_rejects`` proves that each check fires.

If the machine has ``udevadm verify`` (systemd >= 254) the files are also checked by udev itself;
``node --check`` does the same for the polkit rule's JavaScript syntax.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# The rules are package data (so that `sscard install-rules` has them in an installed wheel);
# their documentation stays in udev/README.md.
UDEV_DIR = Path(__file__).resolve().parent.parent / "src" / "sscard" / "rules"
RULES_FILES = sorted(UDEV_DIR.glob("*.rules"))
POLKIT_RULES = UDEV_DIR / "polkit" / "50-sscard-pcscd.rules"
README = Path(__file__).resolve().parent.parent / "udev" / "README.md"

# --------------------------------------------------------------------------------------------------
# The linter
# --------------------------------------------------------------------------------------------------

MATCH_OPS = frozenset({"==", "!="})
ALL_OPS = frozenset({"==", "!=", "=", "+=", "-=", ":="})


@dataclass(frozen=True)
class KeySpec:
    """What udev accepts for one key."""

    ops: frozenset[str]
    #: "none": no ``{attr}``; "required": ``KEY{attr}``; "optional": either.
    attr: str = "none"
    #: When not None, the only attribute names udev knows for this key.
    attr_values: frozenset[str] | None = None
    #: Empty value is an error ("empty value" in udev's checks).
    nonempty: bool = False


def _ops(*ops: str) -> frozenset[str]:
    return frozenset(ops)


#: Every key udev knows, with the operators it takes without warning.  Pure match keys take
#: ``==``/``!=`` only; pure assignment keys never take them.  PROGRAM and IMPORT are matches whose
#: ``=``, ``+=`` and ``:=`` mean ``==`` (udev(7)); ``-=`` is rejected for them.
KEYS: dict[str, KeySpec] = {
    # match only
    "ACTION": KeySpec(MATCH_OPS),
    "DEVPATH": KeySpec(MATCH_OPS),
    "KERNEL": KeySpec(MATCH_OPS),
    "KERNELS": KeySpec(MATCH_OPS),
    "SUBSYSTEM": KeySpec(MATCH_OPS),
    "SUBSYSTEMS": KeySpec(MATCH_OPS),
    "DRIVER": KeySpec(MATCH_OPS),
    "DRIVERS": KeySpec(MATCH_OPS),
    "ATTRS": KeySpec(MATCH_OPS, attr="required"),
    "CONST": KeySpec(MATCH_OPS, attr="required", attr_values=frozenset({"arch", "virt"})),
    "TAGS": KeySpec(MATCH_OPS),
    "TEST": KeySpec(MATCH_OPS, attr="optional", nonempty=True),
    "RESULT": KeySpec(MATCH_OPS),
    "PROGRAM": KeySpec(_ops("==", "!=", "=", "+=", ":="), nonempty=True),
    "IMPORT": KeySpec(
        _ops("==", "!=", "=", "+=", ":="),
        attr="required",
        attr_values=frozenset({"program", "builtin", "file", "db", "cmdline", "parent"}),
        nonempty=True,
    ),
    # match or assignment
    "NAME": KeySpec(_ops("==", "!=", "=", ":=")),
    "SYMLINK": KeySpec(ALL_OPS),
    "ATTR": KeySpec(_ops("==", "!=", "="), attr="required"),
    "SYSCTL": KeySpec(_ops("==", "!=", "="), attr="required"),
    "ENV": KeySpec(_ops("==", "!=", "=", "+="), attr="required"),
    "TAG": KeySpec(_ops("==", "!=", "=", "+=", "-="), nonempty=True),
    # assignment only
    "OWNER": KeySpec(_ops("=", ":="), nonempty=True),
    "GROUP": KeySpec(_ops("=", ":="), nonempty=True),
    "MODE": KeySpec(_ops("=", ":="), nonempty=True),
    "SECLABEL": KeySpec(_ops("=", "+="), attr="required", nonempty=True),
    "OPTIONS": KeySpec(_ops("=", "+=", ":="), nonempty=True),
    "RUN": KeySpec(
        _ops("=", "+=", ":="), attr="optional", attr_values=frozenset({"program", "builtin"}), nonempty=True
    ),
    "LABEL": KeySpec(_ops("="), nonempty=True),
    "GOTO": KeySpec(_ops("="), nonempty=True),
}

#: Keys that test the device even when written with an assignment operator (see KEYS).
ALWAYS_MATCH_KEYS = frozenset({"PROGRAM", "IMPORT"})
#: Properties the kernel or udev owns; ``ENV{X}=`` on them is rejected by udev.
READONLY_PROPERTIES = frozenset(
    {"ACTION", "DEVLINKS", "DEVNAME", "DEVPATH", "DEVTYPE", "DRIVER", "IFINDEX", "MAJOR", "MINOR"}
    | {"SEQNUM", "SUBSYSTEM", "TAGS", "CURRENT_TAGS", "USEC_INITIALIZED"}
)
OPTIONS_RE = re.compile(
    r"(dump|string_escape=(none|replace)|db_persist|watch|nowatch|static_node=\S+|link_priority=-?\d+|log_level=\w+)"
)
OCTAL_MODE_RE = re.compile(r"[0-7]{3,4}")
ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|\d+")
KEY_END = " \t={"


@dataclass(frozen=True)
class Token:
    key: str
    attr: str | None
    op: str
    value: str
    prefix: str = ""

    @property
    def is_match(self) -> bool:
        return self.op in MATCH_OPS or self.key in ALWAYS_MATCH_KEYS


@dataclass(frozen=True)
class Rule:
    """One logical line: its number (of its first physical line) and its tokens."""

    line: int
    text: str
    tokens: tuple[Token, ...]

    def values(self, key: str, attr: str | None = None) -> list[str]:
        return [t.value for t in self.tokens if t.key == key and t.attr == attr]


@dataclass(frozen=True)
class Problem:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class TokenError(ValueError):
    pass


def logical_lines(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Assemble logical lines as udev does; return them with their first line number, and errors.

    Leading whitespace is skipped; a line whose first character is then ``#`` is a comment, even in
    the middle of a continuation; a line ending in ``\\`` continues on the next one.
    """
    lines: list[tuple[int, str]] = []
    errors: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    number = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip(" \t")
        if line.startswith("#"):
            continue
        if pending is None:
            start = number
        if line.rstrip(" \t").endswith("\\") and not line.endswith("\\"):
            errors.append((number, "whitespace after the line-continuation backslash"))
        if line.endswith("\\"):
            pending = (pending or "") + line[:-1]
            continue
        full = (pending or "") + line
        pending = None
        if full.strip():
            lines.append((start, full))
    if pending is not None:
        errors.append((number, "file ends inside a line continuation"))
    return lines, errors


def tokenize(line: str) -> list[Token]:
    """Split a logical line into ``KEY[{attr}] OP "value"`` tokens separated by commas."""
    tokens: list[Token] = []
    pos = 0
    n = len(line)
    while True:
        # Delimiter before this token: nothing for the first one, exactly one comma afterwards.
        start = pos
        while pos < n and line[pos] in " \t,":
            pos += 1
        commas = line[start:pos].count(",")
        if pos >= n:
            if commas:
                raise TokenError("stray comma at the end of the rule")
            return tokens
        if not tokens and commas:
            raise TokenError("stray comma at the start of the rule")
        if tokens and commas != 1:
            raise TokenError(f"tokens must be separated by one comma, found {commas} before {line[pos:]!r}")

        key_start = pos
        while pos < n and line[pos] not in KEY_END and not (line[pos] in "+-!:" and line[pos + 1 : pos + 2] == "="):
            pos += 1
        if pos >= n:
            raise TokenError(f"key without operator and value: {line[key_start:]!r}")
        key = line[key_start:pos]
        if not key:
            raise TokenError(f"missing key before {line[pos:]!r}")
        attr: str | None = None
        if line[pos] == "{":
            close = line.find("}", pos)
            if close < 0:
                raise TokenError(f"unclosed '{{' after {key}")
            attr = line[pos + 1 : close]
            pos = close + 1
        while pos < n and line[pos] in " \t":
            pos += 1
        op = next((o for o in ("==", "!=", "+=", "-=", ":=", "=") if line.startswith(o, pos)), None)
        if op is None:
            raise TokenError(f"invalid operator after {key}: {line[pos : pos + 3]!r}")
        pos += len(op)
        if line[pos : pos + 1] in ("~", "<", ">", "!", "="):
            raise TokenError(f"invalid operator after {key}: {line[pos - len(op) : pos + 1]!r}")
        while pos < n and line[pos] in " \t":
            pos += 1
        prefix = ""
        while pos < n and line[pos] in "ei" and line[pos] not in prefix and len(prefix) < 2:
            prefix += line[pos]
            pos += 1
        if pos >= n or line[pos] != '"':
            raise TokenError(f"value of {key} must be a double-quoted string")
        pos += 1
        value_chars: list[str] = []
        while True:
            if pos >= n:
                raise TokenError(f"unterminated quoted value of {key}")
            ch = line[pos]
            if ch == "\\" and pos + 1 < n and (line[pos + 1] == '"' or "e" in prefix):
                value_chars.append(line[pos : pos + 2] if "e" in prefix else '"')
                pos += 2
                continue
            if ch == '"':
                pos += 1
                break
            value_chars.append(ch)
            pos += 1
        tokens.append(Token(key, attr, op, "".join(value_chars), prefix))
        if pos < n and line[pos] not in " \t,":
            raise TokenError(f"unexpected text after the value of {key}: {line[pos:]!r}")


def check_token(token: Token) -> list[str]:
    """Problems with one token, judged on its own."""
    spec = KEYS.get(token.key)
    if spec is None:
        return [f"unknown key {token.key!r}"]
    name = token.key if token.attr is None else f"{token.key}{{{token.attr}}}"
    problems: list[str] = []
    if spec.attr == "none" and token.attr is not None:
        problems.append(f"{token.key} takes no {{attribute}}, got {name}")
    if spec.attr == "required" and not token.attr:
        problems.append(f"{token.key} needs an {{attribute}}, e.g. {token.key}{{name}}")
    if token.attr and spec.attr_values is not None and token.attr not in spec.attr_values:
        problems.append(f"{name}: unknown {token.key} attribute, expected one of {sorted(spec.attr_values)}")
    if token.op not in spec.ops:
        problems.append(f"{name}: operator {token.op!r} not valid here, {token.key} takes {sorted(spec.ops)}")
    if "i" in token.prefix and token.op not in MATCH_OPS:
        problems.append(f'{name}: the i"..." prefix is only for == and !=')
    if spec.nonempty and not token.value:
        problems.append(f"{name}: empty value")
    if token.key == "MODE" and not OCTAL_MODE_RE.fullmatch(token.value):
        problems.append(f'MODE must be an octal mode such as "0660", got {token.value!r}')
    if token.key == "TEST" and token.attr and not OCTAL_MODE_RE.fullmatch(token.attr):
        problems.append(f"TEST{{{token.attr}}}: the mode mask must be octal")
    if token.key in ("OWNER", "GROUP") and token.value and not ACCOUNT_RE.fullmatch(token.value):
        problems.append(f"{token.key}: {token.value!r} is not a user/group name or id")
    if token.key == "OPTIONS" and token.value and not OPTIONS_RE.fullmatch(token.value):
        problems.append(f"OPTIONS: unknown option {token.value!r}")
    if token.key == "ENV" and not token.is_match and token.attr in READONLY_PROPERTIES:
        problems.append(f"ENV{{{token.attr}}} cannot be assigned, udev owns that property")
    if token.key in ("GOTO", "LABEL") and token.value and not re.fullmatch(r"[A-Za-z0-9_.-]+", token.value):
        problems.append(f"{token.key}: unusual label name {token.value!r}")
    return problems


def parse_rules(text: str) -> tuple[list[Rule], list[tuple[int, str]]]:
    """Logical lines tokenized into rules, plus syntax errors (line number, message)."""
    lines, errors = logical_lines(text)
    rules: list[Rule] = []
    for number, line in lines:
        try:
            rules.append(Rule(number, line, tuple(tokenize(line))))
        except TokenError as exc:
            errors.append((number, str(exc)))
    return rules, errors


def lint_rules(text: str, source: str = "<rules>") -> list[Problem]:
    """Every problem in a udev rules file's text; an empty list means it is clean."""
    rules, errors = parse_rules(text)
    found = [Problem(source, number, message) for number, message in errors]
    labels = [(i, v) for i, rule in enumerate(rules) for v in rule.values("LABEL")]
    gotos: set[str] = set()
    for index, rule in enumerate(rules):
        for token in rule.tokens:
            found += [Problem(source, rule.line, message) for message in check_token(token)]
        keys = [t.key for t in rule.tokens]
        if keys.count("GOTO") > 1:
            found.append(Problem(source, rule.line, "more than one GOTO in a rule"))
        if keys.count("LABEL") > 1:
            found.append(Problem(source, rule.line, "more than one LABEL in a rule"))
        is_label_only = keys == ["LABEL"]
        if not is_label_only and not any(t.is_match for t in rule.tokens):
            found.append(Problem(source, rule.line, "rule has no match key, so it applies to every device"))
        if not any(not t.is_match or t.key in ALWAYS_MATCH_KEYS for t in rule.tokens):
            found.append(Problem(source, rule.line, "rule only matches and assigns nothing: it has no effect"))
        for target in rule.values("GOTO"):
            gotos.add(target)
            # udev looks for the label only *after* the GOTO, in the same file.
            if not any(i > index and v == target for i, v in labels):
                found.append(Problem(source, rule.line, f'GOTO="{target}" has no matching LABEL after it'))
    for i, name in labels:
        if name not in gotos:
            found.append(Problem(source, rules[i].line, f'LABEL="{name}" is never used by a GOTO'))
    return sorted(found, key=lambda p: p.line)


# --------------------------------------------------------------------------------------------------
# The shipped rules files
# --------------------------------------------------------------------------------------------------


def _rules_of(path: Path) -> list[Rule]:
    rules, errors = parse_rules(path.read_text(encoding="utf-8"))
    assert not errors, errors
    return rules


def test_rules_files_exist() -> None:
    names = [p.name for p in RULES_FILES]
    assert "60-sscard-ccid.rules" in names
    assert "61-sscard-serial.rules" in names


@pytest.mark.parametrize("path", RULES_FILES, ids=[p.name for p in RULES_FILES])
def test_rules_file_lints_clean(path: Path) -> None:
    problems = lint_rules(path.read_text(encoding="utf-8"), path.name)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("path", RULES_FILES, ids=[p.name for p in RULES_FILES])
def test_rules_file_conventions(path: Path) -> None:
    """Name sorts where udev runs it; GROUP is always "sscard", with a MODE on the same line that gives
    the group read-write access and nobody else write access."""
    assert re.fullmatch(r"\d\d-sscard-[a-z0-9-]+\.rules", path.name), path.name
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert "\t" not in text
    rules = _rules_of(path)
    assert any(r.values("GROUP") for r in rules), f"{path.name} grants no group access"
    for rule in rules:
        for group in rule.values("GROUP"):
            assert group == "sscard", f"{path.name}:{rule.line}: GROUP={group!r}"
            modes = rule.values("MODE")
            assert len(modes) == 1, f"{path.name}:{rule.line}: GROUP without a MODE on the same line"
            group_bits, other_bits = int(modes[0][-2]), int(modes[0][-1])
            assert group_bits == 6, f"{path.name}:{rule.line}: MODE={modes[0]} does not give the group rw"
            assert other_bits in (0, 4), f"{path.name}:{rule.line}: MODE={modes[0]} lets everyone write"
        assert not rule.values("OWNER"), "no rule should change a node's owner"
        assert not rule.values("RUN"), "no rule should run programs"


def _udev_glob(pattern: str, value: str) -> bool:
    """udev's match: shell globs, ``|`` separating alternatives."""
    return any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


def _ccid_patterns() -> list[str]:
    rules = _rules_of(UDEV_DIR / "60-sscard-ccid.rules")
    return [
        t.value for r in rules for t in r.tokens if t.key == "ENV" and t.attr == "ID_USB_INTERFACES" and t.op == "=="
    ]


@pytest.mark.parametrize(
    ("interfaces", "is_reader"),
    [
        (":0b0000:", True),  # plain CCID reader
        (":030000:0b0000:", True),  # composite: HID + CCID (reader with keypad, token)
        (":0b0000:030101:", True),
        (":0b0001:", True),  # ICCD
        (":030101:", False),  # keyboard
        (":080650:", False),  # USB stick
        (":ff0b00:", False),  # vendor class whose subclass happens to be 0b
        (":02020b:0a0000:", False),  # CDC-ACM whose protocol byte is 0b
        ("", False),
    ],
)
def test_ccid_rule_matches_interface_class_0b(interfaces: str, is_reader: bool) -> None:
    patterns = _ccid_patterns()
    assert patterns, "60-sscard-ccid.rules should match ENV{ID_USB_INTERFACES}"
    assert any(_udev_glob(p, interfaces) for p in patterns) is is_reader


def _serial_ids() -> list[tuple[str, str]]:
    """(idVendor pattern, idProduct pattern or "*") for every device rule in the serial file."""
    out = []
    for rule in _rules_of(UDEV_DIR / "61-sscard-serial.rules"):
        for vendor in rule.values("ATTRS", "idVendor"):
            products = rule.values("ATTRS", "idProduct") or ["*"]
            out += [(vendor, product) for product in products]
    return out


@pytest.mark.parametrize(
    ("vid", "pid", "listed"),
    [
        ("1a86", "7523", True),  # WCH CH340
        ("0403", "6001", True),  # FTDI FT232R
        ("10c4", "ea60", True),  # Silicon Labs CP210x
        ("067b", "2303", True),  # Prolific PL2303
        ("046d", "c52b", False),  # Logitech receiver
        ("1a86", "e024", False),  # a WCH part that is not one of the listed bridges
        ("12d1", "1506", False),  # Huawei modem: ModemManager must keep it
    ],
)
def test_serial_rules_cover_common_bridges(vid: str, pid: str, listed: bool) -> None:
    ids = _serial_ids()
    assert any(_udev_glob(v, vid) and _udev_glob(p, pid) for v, p in ids) is listed


def test_serial_rules_touch_only_usb_serial_ttys() -> None:
    rules = _rules_of(UDEV_DIR / "61-sscard-serial.rules")
    gates = [r for r in rules if r.values("GOTO") and r.values("KERNEL")]
    assert gates, "the file should skip everything but ttyUSB*/ttyACM* first"
    assert all(_udev_glob(r.values("KERNEL")[0], n) for r in gates for n in ("ttyUSB0", "ttyACM12"))
    assert not any(_udev_glob(r.values("KERNEL")[0], "ttyS0") for r in gates)
    links = [v for r in rules for v in r.values("SYMLINK")]
    assert links
    # Our own namespace only: /dev/sscard/... and the role names /dev/sscard-qr, /dev/sscard-idcard.
    assert all(v.startswith("sscard/") or v in ("sscard-qr", "sscard-idcard") for v in links), links


def test_installed_libccid_rules_lint_clean() -> None:
    """No false positives on the distribution's own CCID rules, when libccid is installed."""
    candidates = [
        *Path("/lib/udev/rules.d").glob("*ccid*.rules"),
        *Path("/usr/lib/udev/rules.d").glob("*ccid*.rules"),
    ]
    if not candidates:
        pytest.skip("libccid's udev rules are not installed on this machine")
    for path in candidates:
        problems = lint_rules(path.read_text(encoding="utf-8"), str(path))
        assert not problems, "\n".join(map(str, problems))


def _udevadm_verify() -> str:
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed (package udev); the built-in linter still ran")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("this udevadm has no 'verify' command (systemd < 254)")
    return udevadm


@pytest.mark.parametrize("path", RULES_FILES, ids=[p.name for p in RULES_FILES])
def test_udevadm_verify(path: Path) -> None:
    udevadm = _udevadm_verify()
    # --resolve-names=never: the sscard group need not exist on the machine running the tests.
    result = subprocess.run(
        [udevadm, "verify", "--resolve-names=never", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------
# The linter catches what it claims to
# --------------------------------------------------------------------------------------------------

OK_HEAD = 'SUBSYSTEM=="usb", '


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('SUBSYTEM=="usb", GROUP="sscard", MODE="0660"', "unknown key 'SUBSYTEM'", id="misspelt-key"),
        pytest.param('ATTRS{idVendor}=="1a86", GRUOP="sscard"', "unknown key 'GRUOP'", id="misspelt-assign-key"),
        pytest.param('SUBSYSTEM=~"usb", MODE="0660"', "invalid operator", id="bad-operator"),
        pytest.param('SUBSYSTEM==="usb", MODE="0660"', "invalid operator", id="triple-equals"),
        pytest.param('SUBSYSTEM<>"usb", MODE="0660"', "invalid operator", id="angle-operator"),
        pytest.param('SUBSYSTEM==usb, MODE="0660"', "double-quoted", id="unquoted-value"),
        pytest.param('KERNEL=="ttyUSB*", GROUP="sscard', "unterminated", id="unbalanced-quote"),
        pytest.param('SUBSYSTEM=="usb, MODE="0660"', "unexpected text", id="quote-swallows-comma"),
        pytest.param(OK_HEAD + 'GROUP="sscard", MODE="rw"', "octal", id="mode-not-octal"),
        pytest.param(OK_HEAD + 'GROUP="sscard", MODE="660rw"', "octal", id="mode-garbage"),
        pytest.param('SUBSYSTEM!="usb", GOTO="nowhere"', 'GOTO="nowhere" has no matching LABEL', id="goto-no-label"),
        pytest.param('LABEL="back"\nSUBSYSTEM!="usb", GOTO="back"', "no matching LABEL after it", id="goto-backwards"),
        pytest.param(
            'ACTION=="remove", GOTO="a", GOTO="b"\nLABEL="a"\nLABEL="b"', "more than one GOTO", id="two-gotos"
        ),
        pytest.param('SUBSYSTEM=="usb", GOTO="end"\nLABEL="end"\nLABEL="spare"', "never used", id="unused-label"),
        pytest.param('ATTRS=="0b", MODE="0660"', "ATTRS needs an {attribute}", id="attrs-without-attr"),
        pytest.param('ENV=="1", MODE="0660"', "ENV needs an {attribute}", id="env-without-attr"),
        pytest.param('SUBSYSTEM{usb}=="usb", MODE="0660"', "takes no {attribute}", id="attr-on-plain-key"),
        pytest.param(OK_HEAD + 'GROUP{x}="sscard", MODE="0660"', "takes no {attribute}", id="attr-on-group"),
        pytest.param('CONST{cpu}=="x86-64", MODE="0660"', "unknown CONST attribute", id="const-attr"),
        pytest.param(OK_HEAD + 'IMPORT{bogus}="path_id"', "unknown IMPORT attribute", id="import-attr"),
        pytest.param(OK_HEAD + 'RUN{shell}+="/bin/true"', "unknown RUN attribute", id="run-attr"),
        pytest.param('TEST{rw}=="power/control", MODE="0660"', "must be octal", id="test-mode"),
        pytest.param('KERNEL="ttyUSB0", MODE="0660"', "operator '=' not valid here", id="assign-to-match-key"),
        pytest.param('SUBSYSTEMS+="usb", MODE="0660"', "operator '+=' not valid here", id="add-to-match-key"),
        pytest.param('ATTRS{idVendor}:="1a86", MODE="0660"', "operator ':=' not valid", id="final-on-attrs"),
        pytest.param(OK_HEAD + 'GROUP=="sscard"', "operator '==' not valid here", id="match-on-group"),
        pytest.param(OK_HEAD + 'MODE!="0660"', "operator '!=' not valid here", id="nomatch-on-mode"),
        pytest.param(OK_HEAD + 'GROUP+="sscard", MODE="0660"', "operator '+=' not valid", id="group-plus"),
        pytest.param(OK_HEAD + 'RUN=="/bin/true"', "operator '==' not valid here", id="match-on-run"),
        pytest.param(OK_HEAD + 'GOTO=="end"\nLABEL="end"', "operator '==' not valid", id="goto-match"),
        pytest.param(OK_HEAD + 'ENV{X}:="1"', "operator ':=' not valid", id="env-final"),
        pytest.param(OK_HEAD + 'PROGRAM-="/bin/true"', "operator '-=' not valid", id="program-remove"),
        pytest.param(OK_HEAD + 'ENV{DEVTYPE}="x"', "cannot be assigned", id="readonly-env"),
        pytest.param(OK_HEAD + 'GROUP="", MODE="0660"', "empty value", id="empty-group"),
        pytest.param(OK_HEAD + 'GROUP="my group", MODE="0660"', "not a user/group name", id="group-with-space"),
        pytest.param(OK_HEAD + 'OPTIONS+="link_prio=10"', "unknown option", id="bad-option"),
        pytest.param(OK_HEAD + 'SYMLINK+=i"x"', "prefix is only for", id="i-prefix-on-assign"),
        pytest.param('MODE="0660"', "no match key", id="no-match-key"),
        pytest.param('GROUP="sscard", MODE="0660"', "applies to every device", id="no-match-key-2"),
        pytest.param('SUBSYSTEM=="usb", KERNEL=="x"', "no effect", id="no-effect"),
        pytest.param('SUBSYSTEM=="usb" MODE="0660"', "separated by one comma", id="missing-comma"),
        pytest.param('SUBSYSTEM=="usb",, MODE="0660"', "separated by one comma", id="double-comma"),
        pytest.param('SUBSYSTEM=="usb", MODE="0660",', "stray comma at the end", id="trailing-comma"),
        pytest.param(', SUBSYSTEM=="usb", MODE="0660"', "stray comma at the start", id="leading-comma"),
        pytest.param('SUBSYSTEM=="usb", MODE', "without operator", id="key-without-op"),
        pytest.param('SUBSYSTEM=="usb", ATTR{power/control="auto"', "unclosed '{'", id="unclosed-brace"),
        pytest.param(OK_HEAD + 'MODE="0660", \\', "inside a line continuation", id="continuation-at-eof"),
        pytest.param(OK_HEAD + '\\ \nMODE="0660"', "whitespace after the line-continuation", id="space-after-bs"),
    ],
)
def test_linter_rejects(text: str, expected: str) -> None:
    problems = lint_rules(text + "\n")
    assert any(expected in p.message for p in problems), f"expected {expected!r}, got {[str(p) for p in problems]}"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", GROUP="sscard", MODE="0660"', id="plain"),
        pytest.param('ACTION!="add", GOTO="x_end"\nSUBSYSTEM=="usb", TAG+="uaccess"\nLABEL="x_end"', id="goto-label"),
        pytest.param('SUBSYSTEMS=="usb", \\\n  ATTRS{idVendor}=="1a86", \\\n  SYMLINK+="sscard/x"', id="continuation"),
        pytest.param(
            'KERNEL=="ttyUSB*", \\\n# a comment inside a continuation is skipped\n  MODE="0660"', id="comment-in-cont"
        ),
        pytest.param('KERNEL=="ttyUSB[0-9]*|ttyACM[0-9]*", ENV{.PORT}="$attr{port_number}"', id="dot-env"),
        pytest.param('ENV{ID_USB_INTERFACES}==":0b0000:", TEST=="power/control", ATTR{power/control}="auto"', id="t"),
        pytest.param('TEST{0644}=="/etc/x", RUN+="/bin/true"', id="test-mode"),
        pytest.param('IMPORT{builtin}="path_id"', id="import-alone-is-a-match"),
        pytest.param('PROGRAM="/bin/echo x", RESULT=="x", SYMLINK+="y"', id="program-result"),
        pytest.param('KERNEL=="sd*", ENV{ID_X}=e"a\\tb", OPTIONS+="link_priority=-10"', id="escaped-value"),
        pytest.param('ATTR{product}==i"*Reader*", ENV{X}="1"', id="case-insensitive"),
        pytest.param('ATTR{x}=="a\\"b", ENV{X}="1"', id="escaped-quote"),
        pytest.param('CONST{virt}=="none", SUBSYSTEM=="usb", SECLABEL{selinux}="x", OWNER="0"', id="misc"),
        pytest.param('   \n# only a comment\n\nACTION=="add", RUN{builtin}+="kmod load x"', id="blank-lines"),
    ],
)
def test_linter_accepts(text: str) -> None:
    problems = lint_rules(text + "\n")
    assert not problems, "\n".join(map(str, problems))


def test_linter_reports_line_numbers() -> None:
    text = '# header\n\nSUBSYSTEM=="usb", \\\n  MODE="0660"\nSUBSYTEM=="usb", MODE="0660"\n'
    rules, errors = parse_rules(text)
    assert not errors
    assert [r.line for r in rules] == [3, 5]
    assert rules[0].tokens == (Token("SUBSYSTEM", None, "==", "usb"), Token("MODE", None, "=", "0660"))
    assert [p.line for p in lint_rules(text)] == [5]


# --------------------------------------------------------------------------------------------------
# The polkit rule and the README
# --------------------------------------------------------------------------------------------------


def _js_code() -> str:
    """The polkit rule without its comments."""
    text = POLKIT_RULES.read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def test_polkit_rule_content() -> None:
    code = _js_code()
    assert "polkit.addRule(" in code
    assert '"org.debian.pcsc-lite.access_pcsc"' in code
    assert '"org.debian.pcsc-lite.access_card"' in code
    assert 'subject.isInGroup("sscard")' in code
    assert "polkit.Result.YES" in code
    # Never hand out more than it grants, nor deny others: no NO/AUTH results, no blanket YES.
    assert not re.search(r"polkit\.Result\.(NO|AUTH_\w+)\b", code)
    assert code.count("{") == code.count("}")
    assert code.count("(") == code.count(")")


def test_polkit_rule_is_es5() -> None:
    """Debian's polkitd evaluates rules with duktape (ES5): no let/const/arrow functions/templates."""
    code = _js_code()
    for construct in (r"\blet\s", r"\bconst\s", r"=>", r"`", r"\bclass\s"):
        assert not re.search(construct, code), construct


def test_polkit_rule_javascript_syntax() -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed; the textual checks still ran")
    # Through stdin: node refuses to --check a file whose extension is not .js.
    result = subprocess.run(
        [node, "--check", "-"],
        input=POLKIT_RULES.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_node_check_catches_a_syntax_error() -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed")
    broken = POLKIT_RULES.read_text(encoding="utf-8").replace("});", "}", 1)
    result = subprocess.run([node, "--check", "-"], input=broken, capture_output=True, text=True, check=False)
    assert result.returncode != 0


def test_readme_covers_every_file_and_step() -> None:
    readme = README.read_text(encoding="utf-8")
    for path in [*RULES_FILES, POLKIT_RULES]:
        assert path.name in readme, f"udev/README.md does not mention {path.name}"
    for step in ("groupadd --system sscard", "usermod -aG sscard", "udevadm control --reload-rules", "udevadm trigger"):
        assert step in readme, step
    for check in ("pcsc_scan", "sscard readers"):
        assert check in readme, check
