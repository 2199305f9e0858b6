"""Request bodies: at most :data:`MAX_BODY` bytes, a JSON object of the endpoint's fields, each of its type.

Everything a client can get wrong in a body is a :class:`~sscard.service.problems.BadRequest` or
:class:`~sscard.service.problems.RequestTooLarge` in the JSON error form, never a 500.
:data:`FIELDS` is also the OpenAPI document's request schemas (:mod:`sscard.service.openapi`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from sscard.cardapp import APPLICATIONS
from sscard.offers import METHODS as SIGN_IN_METHODS
from sscard.service.logs import clean
from sscard.service.problems import BadRequest, ClientGone, RequestTooLarge

MAX_BODY = 64 * 1024
PIN_FIELDS = frozenset({"pin", "old_pin", "new_pin", "old", "new"})


def limited(receive: Receive) -> Receive:
    """Refuse bodies past MAX_BODY even without (or with a lying) Content-Length."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooLarge
        return message

    return wrapped


class _TooLarge(Exception):
    pass


class Choice(tuple[str, ...]):
    """A string field that must be one of these values (the OpenAPI ``enum``)."""

    __slots__ = ()


#: The fields each endpoint's body may have, with their JSON types or the strings allowed (also
#: the OpenAPI schemas).  ``/v1/read``'s ``app``: the card application to read (sscard.cardapp).
FIELDS: dict[str, dict[str, type | Choice]] = {
    "/v1/read": {"allow_partial": bool, "app": Choice(APPLICATIONS.names)},
    "/v1/verify": {"pin": str},
    "/v1/sign-in": {"pin": str, "method": Choice((*SIGN_IN_METHODS, "any")), "timeout": float},
    "/v1/token/verify": {"token": str, "terminal_id": str},
    "/v1/pin-entry": {"request": str, "pin": str, "old": str, "new": str, "cancel": bool},
    "/v1/medical/credential": {"timeout": float, "pin": str},
}


async def body_of(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object of the endpoint's :data:`FIELDS`, each of its type.

    Everything a client can get wrong is a :class:`BadRequest` (400) in the JSON error form, never
    a 500: bytes that are not UTF-8, JSON nested past the recursion limit, a number past Python's
    4300-digit conversion limit, ``NaN``, duplicate keys, unknown fields, wrong types (so that
    ``"allow_partial": "false"`` is refused instead of being true).
    """
    try:
        raw = await request.body()
    except _TooLarge:
        raise RequestTooLarge() from None
    except ClientDisconnect:
        raise ClientGone from None
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", "请求内容不是UTF-8编码的文本") from None
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply", "JSON嵌套层数过多") from None
    except _DuplicateKey as exc:
        raise BadRequest(f"the field {clean(exc.args[0], 40)!r} appears twice", "同一字段出现了两次") from None
    except ValueError:  # json.JSONDecodeError, or a number too long for int() (max_str_digits)
        raise BadRequest("the body is not valid JSON", "请求内容不是有效的JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", "请求内容必须是JSON对象")
    fields = FIELDS.get(request.url.path, {})
    for key, value in data.items():
        kind = fields.get(key)
        if kind is None:
            raise BadRequest(f"unknown field {clean(key, 40)!r}", "请求中有未知字段")
        if value is None:
            continue
        if isinstance(kind, Choice):
            if not isinstance(value, str) or value not in kind:
                raise BadRequest(f"'{key}' must be one of {', '.join(kind)}", "字段取值无效")
            continue
        if kind is float:  # a JSON number, whole or not; never a boolean
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"'{key}' must be a number", "字段类型错误")
            continue
        if type(value) is not kind:  # not isinstance: a bool is an int, and 0/1 are no booleans
            name = "true or false" if kind is bool else "a string"
            raise BadRequest(f"'{key}' must be {name}", "字段类型错误")
        if isinstance(value, str) and not _encodable(value):
            raise BadRequest(f"'{key}' is not valid text", "字段内容不是有效的文本")
    return data


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _encodable(value: str) -> bool:
    """False for strings with lone surrogates (a JSON ``"\\ud800"`` escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def seconds_field(body: dict[str, Any], key: str, default: float, high: float) -> float:
    """A number of seconds above 0 and at most ``high`` (``default`` when absent)."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise BadRequest(f"'{key}' must be a number of seconds above 0, at most {high:g}", "字段取值无效")
    return float(value)


def text_field(body: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string", "字段类型错误")
    return value
