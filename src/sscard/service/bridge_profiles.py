"""Vendor-bridge profiles: the message shapes of the bridges kiosk pages already call, as data.

Pages written for a vendor's bridge (docs/card-reference.md §8) send that bridge's messages on its
port; a profile (a TOML file, ``sscard/service/bridges/NAME.toml`` or a site's own) says, per
message, which of the national operations the service already runs it means and how the answer
looks.  The interpreter (:mod:`.bridge`) knows the operations; the shapes are all here, so a
bridge nobody has documented fully is adjusted in a file, not in code (docs/service.md, "Vendor
bridge profiles").

A profile is checked completely when it is loaded, at start-up: an unknown key, an operation the
interpreter does not run, an argument it does not take, a placeholder the operation does not fill
— each a CONFIG_ERROR naming the file and the key.

Templates: any TOML value.  A string that is exactly one placeholder (``"{code}"``) becomes the
value itself (a number stays a number); placeholders inside a longer string are replaced by
their text.  ``{request.FIELD}`` is a field of the request message (a string, number or boolean,
strings cut to 64 characters; null or ``""`` when absent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sscard.errors import ERROR_TABLE, ConfigError

#: Fields every operation fills: the national return code, the DLL's output string (the result, or
#: the message on failure), the message alone ("" on success), sscard's stable error code ("" on
#: success) and the name the message gave its call.
COMMON_FIELDS = ("code", "output", "message", "error", "call")
#: The resident ID card's fields (``read_idcard``), dates as YYYYMMDD.
IDCARD_FIELDS = (
    "name",
    "gender",
    "nation",
    "birth_date",
    "address",
    "id_number",
    "issuer",
    "valid_from",
    "valid_to",
)


@dataclass(frozen=True)
class Operation:
    """What the interpreter runs for a call: the arguments it takes from the message, the fields
    its answer fills, and whether an argument is a PIN (never in a URL)."""

    args: tuple[str, ...] = ()
    fields: tuple[str, ...] = COMMON_FIELDS
    pin: bool = False


#: The operations a profile may name: the national calls of docs/card-reference.md §6 that
#: ``/v1/compat`` and the native socket answer, and the resident ID card (§9).
OPERATIONS: Mapping[str, Operation] = {
    "iReadCardBas": Operation(),
    "iReadCardBas_HSM_Step1": Operation(),
    "iReadCardBas_HSM_Step2": Operation(args=("step1", "answer")),
    "iVerifyPIN": Operation(args=("pin",), fields=(*COMMON_FIELDS, "tries_left"), pin=True),
    "iChangePIN": Operation(args=("old", "new"), fields=(*COMMON_FIELDS, "tries_left"), pin=True),
    "read_idcard": Operation(fields=(*COMMON_FIELDS, *IDCARD_FIELDS)),
}
TRANSPORTS = ("websocket", "http")
#: The top-level keys of a profile file, and a call's keys.
PROFILE_KEYS = frozenset(
    {"name", "description", "transport", "port", "path", "select", "query", "pin_timeout", "fallback", "calls", "codes"}
)
CALL_KEYS = frozenset({"operation", "args", "answer"})

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\}")
_WHOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)?)\}\Z")


@dataclass(frozen=True)
class Call:
    """One message of a profile: its operation, message fields for the operation's arguments, the answer."""

    name: str
    operation: str
    args: Mapping[str, str]
    answer: Any


@dataclass(frozen=True)
class Profile:
    """One bridge: where it listens, how a message names its call, the calls and their answers."""

    name: str
    description: str
    transport: str
    port: int
    path: str
    select: str
    query: str
    calls: Mapping[str, Call]
    fallback: Any
    #: sscard error code → the number this bridge answers with (the national code otherwise).
    codes: Mapping[str, int]
    source: str
    #: Seconds the resident has to type a PIN on the PIN device (a PIN call whose message has none).
    pin_timeout: float = 60.0

    def operations(self) -> set[str]:
        return {call.operation for call in self.calls.values()}


def bundled() -> list[str]:
    """The names of the profiles shipped with sscard (``sscard serve --list-bridges``)."""
    folder = resources.files("sscard.service").joinpath("bridges")
    return sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name, or a TOML file by path; ConfigError naming file and key when wrong."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        path = Path(name_or_path)
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read bridge profile {path}: {exc}",
                problem_zh=f"无法读取接口桥配置文件 {path}",
                file=str(path),
            ) from None
    else:
        entry = resources.files("sscard.service").joinpath("bridges").joinpath(f"{name_or_path}.toml")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) or not entry.is_file():
            shipped = ", ".join(bundled())
            raise ConfigError(
                f"no shipped bridge profile {name_or_path!r} (shipped: {shipped}; or give a .toml path)",
                problem_zh=f"没有名为 {name_or_path!r} 的内置接口桥配置（内置：{shipped}；也可给出TOML文件路径）",
                key="bridge.profile",
            )
        text, source = entry.read_text(encoding="utf-8"), f"sscard/service/bridges/{name_or_path}.toml"
    from sscard import _toml as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"bridge profile {source} is not valid TOML: {exc}",
            problem_zh=f"接口桥配置文件 {source} 不是有效的TOML",
            file=source,
        ) from None
    return parse_profile(data, source)


def _fail(source: str, key: str, en: str, zh: str) -> ConfigError:
    return ConfigError(
        f"bridge profile {source}, key {key}: {en}",
        problem_zh=f"接口桥配置文件 {source} 的 {key}：{zh}",
        key=key,
        file=source,
    )


def _text(data: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _fail(source, key, "must be a string", "必须是字符串")
    return value


def parse_profile(data: Mapping[str, Any], source: str) -> Profile:
    """Check a parsed profile against what the interpreter runs (module docstring)."""
    for key in data:
        if key not in PROFILE_KEYS:
            raise _fail(source, key, f"unknown key (keys: {', '.join(sorted(PROFILE_KEYS))})", "未知的配置项")
    transport = _text(data, "transport", source)
    if transport not in TRANSPORTS:
        raise _fail(source, "transport", "must be websocket or http", "必须是websocket或http")
    port = data.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65_535:
        raise _fail(source, "port", "must be a whole number from 1 to 65535", "必须是1到65535的整数")
    path = _text(data, "path", source, "/")
    if not path.startswith("/"):
        raise _fail(source, "path", "must start with /", "必须以/开头")
    select = _text(data, "select", source)
    query = _text(data, "query", source, "")
    if transport == "http" and not query:
        raise _fail(
            source, "query", "an http bridge needs the query parameter holding the message", "必须给出查询参数名"
        )
    pin_timeout = data.get("pin_timeout", 60)
    if isinstance(pin_timeout, bool) or not isinstance(pin_timeout, int | float) or not 1 <= pin_timeout <= 600:
        raise _fail(source, "pin_timeout", "must be a number of seconds from 1 to 600", "必须是1到600的秒数")
    codes = data.get("codes", {})
    if not isinstance(codes, dict):
        raise _fail(source, "codes", "must be a table", "必须是表")
    for code, number in codes.items():
        if code not in ERROR_TABLE:
            raise _fail(source, f"codes.{code}", "not an sscard error code (docs/cli.md)", "不是sscard的错误代码")
        if isinstance(number, bool) or not isinstance(number, int):
            raise _fail(source, f"codes.{code}", "must be a whole number", "必须是整数")
    table = data.get("calls")
    if not isinstance(table, dict) or not table:
        raise _fail(source, "calls", "needs at least one [calls.NAME] table", "至少需要一个[calls.名称]表")
    calls = {name: _call(str(name), spec, transport, source) for name, spec in table.items()}
    # A PIN is never echoed: no answer may quote a message field that carries one.
    secret = frozenset(
        field for call in calls.values() if OPERATIONS[call.operation].pin for field in call.args.values()
    )
    for call in calls.values():
        check_template(call.answer, OPERATIONS[call.operation].fields, source, f"calls.{call.name}.answer", secret)
    fallback = data.get("fallback", {})
    if not isinstance(fallback, dict) or set(fallback) != {"answer"}:
        raise _fail(source, "fallback", "must be a table with one key, answer", "必须是只含answer的表")
    check_template(fallback["answer"], COMMON_FIELDS, source, "fallback.answer", secret)
    return Profile(
        name=_text(data, "name", source, Path(source).stem),
        description=_text(data, "description", source, ""),
        transport=transport,
        port=port,
        path=path,
        select=select,
        query=query,
        calls=calls,
        fallback=fallback["answer"],
        codes=dict(codes),
        source=source,
        pin_timeout=float(pin_timeout),
    )


def _call(name: str, spec: Any, transport: str, source: str) -> Call:
    where = f"calls.{name}"
    if not isinstance(spec, dict):
        raise _fail(source, where, "must be a table", "必须是表")
    for key in spec:
        if key not in CALL_KEYS:
            raise _fail(source, f"{where}.{key}", "unknown key (operation, args, answer)", "未知的配置项")
    operation = _text(spec, "operation", source, "")
    if operation not in OPERATIONS:
        known = ", ".join(OPERATIONS)
        raise _fail(source, f"{where}.operation", f"unknown operation {operation!r} (known: {known})", "未知的操作")
    op = OPERATIONS[operation]
    if op.pin and transport == "http":
        raise _fail(
            source, f"{where}.operation", "a PIN never goes in a URL: PIN calls only on websocket", "密码不能放在网址中"
        )
    args = spec.get("args", {})
    if not isinstance(args, dict):
        raise _fail(source, f"{where}.args", "must be a table", "必须是表")
    for arg, field in args.items():
        if arg not in op.args:
            taken = ", ".join(op.args) or "none"
            raise _fail(
                source, f"{where}.args.{arg}", f"{operation} takes no such argument ({taken})", "该操作无此参数"
            )
        if not isinstance(field, str) or not field:
            raise _fail(source, f"{where}.args.{arg}", "must name a message field", "必须是消息字段名")
    if "answer" not in spec:
        raise _fail(source, f"{where}.answer", "missing", "缺少该项")
    return Call(name, operation, dict(args), spec["answer"])


def check_template(
    template: Any, fields: tuple[str, ...], source: str, key: str, secret: frozenset[str] = frozenset()
) -> None:
    """Every placeholder of ``template`` must be one of ``fields`` or ``request.FIELD`` (a FIELD
    not in ``secret``, the message fields that carry a PIN)."""
    if isinstance(template, dict):
        for name, value in template.items():
            check_template(value, fields, source, f"{key}.{name}", secret)
    elif isinstance(template, list):
        for index, value in enumerate(template):
            check_template(value, fields, source, f"{key}[{index}]", secret)
    elif isinstance(template, str):
        for name in _PLACEHOLDER.findall(template):
            if name.removeprefix("request.") in secret and name.startswith("request."):
                raise _fail(source, key, f"{{{name}}} would echo a PIN", "不得回显密码")
            if name not in fields and not name.startswith("request."):
                raise _fail(
                    source,
                    key,
                    f"unknown placeholder {{{name}}} (this answer may use {', '.join(fields)}, request.FIELD)",
                    "未知的占位符",
                )
    elif not isinstance(template, bool | int | float):
        raise _fail(source, key, "a template is a table, list, string, number or boolean", "模板类型不受支持")


def render(template: Any, values: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
    """The answer: ``template`` with its placeholders filled from ``values`` and the request."""
    if isinstance(template, dict):
        return {name: render(value, values, request) for name, value in template.items()}
    if isinstance(template, list):
        return [render(value, values, request) for value in template]
    if not isinstance(template, str):
        return template
    whole = _WHOLE.match(template)
    if whole:
        return _value(whole.group(1), values, request)
    return _PLACEHOLDER.sub(lambda m: _as_text(_value(m.group(1), values, request)), template)


def _value(name: str, values: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
    if name.startswith("request."):
        echoed = request.get(name.removeprefix("request."))
        if isinstance(echoed, str):
            return echoed[:64]
        return echoed if isinstance(echoed, bool | int | float) else None
    return values.get(name)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
