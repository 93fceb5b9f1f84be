"""Requests of one common shape read straight from the wire: a message that holds a single bytes field.

An upload's chunk message is a MiB of bytes behind two to six bytes of framing. Parsed by protobuf, the bytes
are copied into the message, and again each time the field is read (the edge's contract check reads it once,
the servicer once more): three copies of every MiB, each into freshly allocated memory. Read here, the field is
a memoryview of the buffer gRPC received (no copy at all). Any other message (another field, a second one,
unknown fields, a field over its contract's size, a malformed message) goes to the message's own parser, so a
request means exactly what protobuf says it means; only the common case is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message

from pynode.core.contract import max_bytes


class LoneBytes:
    """A request message that held only the bytes field `name`, within the contract's size for it: `data` is a
    view of the received buffer (the edge has nothing more to check in it)."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: memoryview) -> None:
        self.name = name
        self.data = data


def varint(value: int) -> bytes:
    """A protobuf base-128 varint (non-negative `value`)."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def lone_bytes_parser(message_class: type[Message], field_name: str) -> Callable[[bytes], Any]:
    """A request deserializer for `message_class` that returns a `LoneBytes` for a message holding only its
    bytes field `field_name` (at most the contract's `max_bytes` of it), and the parsed message otherwise."""
    field = message_class.DESCRIPTOR.fields_by_name[field_name]
    if field.type != _descriptor.FieldDescriptor.TYPE_BYTES or field.is_repeated:
        raise ValueError(f"{message_class.DESCRIPTOR.full_name}.{field_name} is not a singular bytes field")
    tag = varint(field.number << 3 | 2)  # wire type 2: length-delimited
    start = len(tag)
    limit = max_bytes(field) or 1 << 32  # type: ignore[arg-type]  # upb's descriptor is the same type
    parse = message_class.FromString

    def parsed(data: bytes) -> Any:
        if data[:start] == tag:
            length, shift, position = 0, 0, start
            while position < start + 5 and position < len(data):  # the length: a varint of at most 5 bytes
                byte = data[position]
                position += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    if position + length == len(data) and length <= limit:
                        return LoneBytes(field_name, memoryview(data)[position:])
                    break
        return parse(data)

    return parsed
