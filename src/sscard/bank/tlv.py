"""BER-TLV as EMV uses it (docs/card-reference.md §11): a small, strict, hand-written parser.

Why hand-written: the BER-TLV packages on PyPI were measured and not taken.  ``ber-tlv`` (0.0.6,
last released 2022; 1.2 ms to import) is untyped, answers with nested lists of ``(int, bytes)``
tuples and raises its own exceptions that do not say which element was being parsed, so wrapping
it would take as much code as this file; the well-kept ``asn1crypto`` costs about 26 ms to import
for its low-level parser and is built around DER schemas.  This file is the whole grammar in some
100 lines, mypy-strict, with one error type.

What it accepts (docs/card-reference.md §11.6):

* tags of one to :data:`MAX_TAG_BYTES` bytes (first byte ``xxx11111`` continues, then every byte
  with bit 8 set continues); the tag is kept as the integer of its bytes (``0x9F38``), the way
  EMV documents write it;
* lengths in short form (``00``–``7F``) or long form ``81``–``83``; the indefinite form ``80`` and
  longer long forms are refused (no EMV object is 16 MB long);
* constructed objects (bit 6 of the first tag byte) are parsed into their children, which must
  fill the value exactly, to a depth of :data:`MAX_DEPTH`;
* ``00`` bytes before, between and after objects (EMV allows them as padding).

Anything else — a length running past the data, a tag cut short, children overrunning their
parent — is a :class:`~sscard.errors.BadRecord` naming the element being parsed.  Never a partial
result: the caller gets every object or an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sscard.errors import BadRecord

MAX_TAG_BYTES = 3
MAX_DEPTH = 8
#: Chinese names of the elements a BadRecord may name (its ``message_zh``).
ELEMENT_ZH = {
    "fci": "应用选择响应(FCI)",
    "ppse": "支付环境目录(PPSE)",
    "pdol": "处理选项数据对象列表(PDOL)",
    "gpo": "获取处理选项响应",
    "afl": "应用文件定位器(AFL)",
    "record": "应用记录",
    "pan": "主账号(PAN)",
    "track2": "二磁道等效信息",
    "expiry": "失效日期",
    "cardholder_name": "持卡人姓名",
    "label": "应用标签",
    "preferred_name": "应用优先名称",
    "aid": "应用标识符(AID)",
}


def bad(element: str, reason: str) -> BadRecord:
    """The one error of this package: BAD_RECORD naming the EMV element (and its Chinese name)."""
    return BadRecord(element, reason, ELEMENT_ZH.get(element, element))


@dataclass(frozen=True)
class Tlv:
    """One data object.  ``children`` is ``None`` for a primitive object, else its parsed content."""

    tag: int
    value: bytes
    children: tuple[Tlv, ...] | None = None

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def find(self, tag: int) -> Tlv | None:
        """The first object with ``tag`` inside this one (depth first), not counting itself."""
        return find(self.children or (), tag)

    def to_bytes(self) -> bytes:
        return encode(self.tag, self.value)


def tag_bytes(tag: int) -> bytes:
    """The wire form of an integer tag (``0x9F38`` → ``9F 38``)."""
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    size = (length.bit_length() + 7) // 8
    if size > 3:
        raise ValueError(f"length {length} needs more than 3 bytes")
    return bytes((0x80 | size,)) + length.to_bytes(size, "big")


def encode(tag: int, value: bytes) -> bytes:
    """One object: tag, shortest length form, value."""
    return tag_bytes(tag) + encode_length(len(value)) + value


def read_tag(data: bytes, pos: int, element: str) -> tuple[int, int]:
    """The tag starting at ``pos`` and the position after it."""
    if pos >= len(data):
        raise bad(element, f"tag expected at offset {pos}, data ends")
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise bad(element, f"tag at offset {start} is cut short")
            byte = data[pos]
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise bad(element, f"tag at offset {start} is longer than {MAX_TAG_BYTES} bytes")
            if not byte & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def read_length(data: bytes, pos: int, element: str) -> tuple[int, int]:
    """The length starting at ``pos`` and the position after it (short form or ``81``–``83``)."""
    if pos >= len(data):
        raise bad(element, f"length expected at offset {pos}, data ends")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    size = first & 0x7F
    if size == 0 or size > 3:
        raise bad(element, f"length form {first:02X} at offset {pos - 1} is not allowed")
    if pos + size > len(data):
        raise bad(element, f"length at offset {pos - 1} is cut short")
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


def parse(data: bytes, element: str, *, depth: int = 0) -> tuple[Tlv, ...]:
    """Every object in ``data`` (constructed ones parsed recursively), or BAD_RECORD for ``element``."""
    if depth > MAX_DEPTH:
        raise bad(element, f"objects nested deeper than {MAX_DEPTH}")
    out: list[Tlv] = []
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0x00:  # EMV padding between objects
            pos += 1
            continue
        start = pos
        tag, pos = read_tag(data, pos, element)
        length, pos = read_length(data, pos, element)
        if pos + length > end:
            raise bad(
                element,
                f"object {tag:X} at offset {start} declares {length} bytes, only {end - pos} follow",
            )
        value = bytes(data[pos : pos + length])
        pos += length
        children = parse(value, element, depth=depth + 1) if data[start] & 0x20 else None
        out.append(Tlv(tag, value, children))
    return tuple(out)


def parse_one(data: bytes, tag: int, element: str) -> Tlv:
    """``data`` must be exactly one object with ``tag`` (padding aside): a template such as 6F, 70, 77."""
    objects = parse(data, element)
    if len(objects) != 1 or objects[0].tag != tag:
        found = " ".join(f"{o.tag:X}" for o in objects) or "nothing"
        raise bad(element, f"expected one {tag:X} template, found {found}")
    return objects[0]


def walk(objects: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first, constructed ones before their children."""
    for obj in objects:
        yield obj
        if obj.children:
            yield from walk(obj.children)


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    return next((obj for obj in walk(objects) if obj.tag == tag), None)


def parse_dol(data: bytes, element: str) -> tuple[tuple[int, int], ...]:
    """A data object list (PDOL, CDOL): ``(tag, length)`` pairs with no values (docs/card-reference.md §11.3)."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < len(data):
        tag, pos = read_tag(data, pos, element)
        length, pos = read_length(data, pos, element)
        out.append((tag, length))
    return tuple(out)
