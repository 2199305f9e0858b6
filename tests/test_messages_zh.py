"""Chinese messages are wholly Chinese (issue 11, item 13).

A resident reading a kiosk screen in Chinese must not meet ``读取cardholder data (EF06)需要终端认证``
or ``配置错误：unknown persona…``.  Two checks:

* every error class is raised with English values for its free-text fields (a problem, a reason,
  an element …) and its ``message_zh`` must show none of them;
* every Chinese text that the code passes to an error (``*_zh=`` keywords, ``UsageError``'s second
  argument, ``BadRecord``'s third) is read from the source with :mod:`ast` and must hold no English
  word either (the literal parts of f-strings; what they interpolate are codes and names).

Allowed are codes and proper names only (``ALLOWED``): upper-case codes and hex (``PIN``, ``EF06``,
``6A82``), command-line options (``--pin-stdin``), configuration keys and sections (``public_key``,
``[session]``), paths, and a short list of product and protocol names that have no Chinese form in use.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

import sscard.tokens  # noqa: F401 - its token errors join the hierarchy when imported
from sscard.errors import SscardError, all_error_classes

SRC = Path(__file__).resolve().parents[1] / "src" / "sscard"

#: Lower- or mixed-case names kept as they are in Chinese text; each is a program or protocol name
#: that Chinese documentation writes in Latin letters too.  (Upper-case codes pass by rule.)
ALLOWED = {
    "pcscd",  # the PC/SC daemon, a program name
    "vpcd",  # vsmartcard's virtual reader, a program name
    "sscard",  # this program
    "udev",
    "polkit",
    "systemd",
    "Ctrl-C",
    "WebSocket",
    "Origin",  # the HTTP header's name
    "root",  # the superuser account's name
}

#: Whole spans that are names by their form: options, config sections, paths, placeholders' codes.
_NAME_SPANS = re.compile(
    r"--[a-z0-9][a-z0-9-]*"  # command-line options
    r"|\[[a-z0-9_.]+\]"  # configuration sections
    r"|(?<![A-Za-z])/[\w./-]+"  # paths
    r"|[A-Za-z0-9.-]*_[A-Za-z0-9_.-]*"  # identifiers with an underscore: keys, codes
    r"|`[^`]*`"
    r"|'[^'\s]*'"  # a quoted value: a name, a code
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9/+-]*")


def english_words(text: str) -> list[str]:
    """The words of ``text`` that are English rather than a code or a name."""
    stripped = _NAME_SPANS.sub(" ", text)
    words = []
    for word in _WORD.findall(stripped):
        word = word.rstrip("-/")
        if word in ALLOWED or not any(c.islower() for c in word):  # PIN, PC/SC, EF06, SM4, QR …
            continue
        if re.fullmatch(r"[0-9A-F]+[a-z]?|0x[0-9A-Fa-f]+", word):
            continue
        words.append(word)
    return words


def test_the_checker_catches_the_reported_messages() -> None:
    assert english_words("读取cardholder data (EF06)需要终端认证") == ["cardholder", "data"]
    assert english_words("配置错误：unknown persona 'x'。") == ["unknown", "persona"]
    assert english_words("配置错误：未知的模拟卡'long_name'") == []
    assert english_words("请用--public-key指定公钥，或在配置[session]中设置public_key") == []
    assert english_words("智能卡服务（pcscd）未运行，PIN错误，状态字6A82，EF05") == []


# English sample values by parameter name; anything else gets a sentence of English words.
_SAMPLES: dict[str, Any] = {
    "sw": 0x6A82,
    "status": 0x41,
    "tries_left": 2,
    "device": "/dev/sscard-qr",
    "path": "/etc/sscard/terminal.key",
    "algorithm": "SM4",
    "key": "IAUTH",
    "reason": "non_printable",  # ScanRejected's reason is a stable code
}
_ENGLISH = "unknown persona in the file"


def _instance(cls: type[SscardError]) -> SscardError:
    arguments: dict[str, Any] = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if name.endswith("_zh") and parameter.default is inspect.Parameter.empty:
            arguments[name] = "中文说明"  # a Chinese text the caller must give
            continue
        if name.endswith("_zh") or name == "detail":
            continue  # what a caller may leave out: the message must stay Chinese without it
        if parameter.default is not inspect.Parameter.empty and name not in _SAMPLES:
            continue
        if name in _SAMPLES:
            arguments[name] = _SAMPLES[name]
        elif parameter.annotation in ("int", "int | None"):
            arguments[name] = 3
        else:
            arguments[name] = _ENGLISH
    if cls.__name__ == "BadRecord":
        arguments["reason"] = "expected tag 08, got nothing"
    return cls(**arguments)


@pytest.mark.parametrize("cls", sorted(all_error_classes(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_error_class_speaks_only_chinese_in_message_zh(cls: type[SscardError]) -> None:
    error = _instance(cls)
    assert error.message_zh, cls
    assert english_words(error.message_zh) == [], f"{cls.__name__}: {error.message_zh!r}"
    # ... and the English message still carries the English detail (nothing lost).
    assert error.message


def _error_names() -> set[str]:
    return {cls.__name__ for cls in all_error_classes()}


def _chinese_arguments(call: ast.Call, name: str) -> list[ast.expr]:
    found = [keyword.value for keyword in call.keywords if keyword.arg and keyword.arg.endswith("_zh")]
    position = {"UsageError": 1, "BadRecord": 2}.get(name)
    if position is not None and len(call.args) > position:
        found.append(call.args[position])
    return found


def _literal_text(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return " ".join(
            part.value for part in node.values if isinstance(part, ast.Constant) and isinstance(part.value, str)
        )
    return None


def chinese_texts_in_source() -> list[tuple[str, int, str]]:
    """(file, line, text) of every Chinese text given to an error in src/sscard."""
    names = _error_names()
    texts = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name not in names:
                continue
            for argument in _chinese_arguments(node, name):
                text = _literal_text(argument)
                if text is not None:
                    texts.append((str(path.relative_to(SRC)), node.lineno, text))
    return texts


def test_the_source_scan_finds_the_chinese_texts() -> None:
    texts = chinese_texts_in_source()
    assert len(texts) > 20
    assert any("持卡人数据" in text for _, _, text in texts)


def test_every_chinese_text_given_to_an_error_is_wholly_chinese() -> None:
    offenders = [
        f"{path}:{line}: {text!r} ({', '.join(words)})"
        for path, line, text in chinese_texts_in_source()
        if (words := english_words(text))
    ]
    assert offenders == []
