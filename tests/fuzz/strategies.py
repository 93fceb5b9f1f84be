"""Hypothesis strategies built from the contracts' descriptors: one per field type, shaped by the field's rules.

Values cluster where bugs live: at the rule's boundaries (max_len and one past it, min/max values and one past
them), at the integer type's edges, in control, invisible and astral characters, in huge strings, unknown enum
numbers, Timestamps out of range, and ids of things the fuzzing user really owns (so calls reach deep code).

Each strategy is built once per field, message type and depth, and reused: hypothesis validates a strategy
the first time it draws from it, and building them inside every draw cost more than the calls fuzzed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from devpynode.common.v1 import options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

FD = _descriptor.FieldDescriptor

_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}

# Characters that break naive code: NUL and C0/C1 controls, bidi overrides, zero-width, BOM, line separators,
# an astral emoji, a combining mark, Cyrillic look-alikes.
_NASTY = "\x00\x07\x1b\x7f\x85\u202e\u2066\u200b\u200d\ufeff\u2028\u2029\U0001f600\u0301\u0430\u0435\\%'\"<>\n\r\t"


_BAD_EMAILS = ["a@b", "@example.com", "a@@example.com", "\u0440\u0430\u0443\u0440\u0430l@example.com", "a@x.com\u200b"]


def _rules(fd: FD) -> options_pb2.FieldRules | None:
    options = fd.GetOptions()
    return options.Extensions[options_pb2.rules] if options.HasExtension(options_pb2.rules) else None


def _text(rules: options_pb2.FieldRules | None, ids: Sequence[str]) -> st.SearchStrategy[str]:
    limit = (rules.max_len or rules.max_bytes) if rules else 0
    choices: list[st.SearchStrategy[str]] = [
        st.text(max_size=24),
        st.text(alphabet=_NASTY, max_size=12),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8).map(lambda s: s * 20),
        st.sampled_from(["", " ", "\t\n", "0", "-1", "null", "../../etc/passwd", "%00", "a" * 257]),
        # Huge: well past any rule, still under the message cap.
        st.integers(1_000, 70_000).map(lambda n: "é" * n),
    ]
    if limit:
        choices.append(st.sampled_from([limit - 1, limit, limit + 1]).map(lambda n: "x" * max(n, 0)))
    if rules and rules.format == options_pb2.STRING_FORMAT_UUID:
        choices += [st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper())]
        if ids:
            choices += [st.sampled_from(list(ids))] * 3
    if rules and rules.format == options_pb2.STRING_FORMAT_EMAIL:
        choices += [
            st.emails().map(str),
            st.uuids().map(lambda u: f"fuzz-{u.hex[:10]}@example.com"),
            st.sampled_from(_BAD_EMAILS),
        ]
    return st.one_of(choices)


def _integer(fd: FD, rules: options_pb2.FieldRules | None) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[fd.type]
    edges = {low, high, 0, 1, min(max(-1, low), high), 2**31 - 1 if high > 2**31 else high}
    if rules is not None:
        for bound in (rules.min_value if rules.HasField("min_value") else None, rules.max_value or None):
            if bound is not None:
                edges |= {bound - 1, bound, bound + 1}
    edges = {e for e in edges if low <= e <= high}
    return st.one_of(
        st.sampled_from(sorted(edges)), st.integers(low, high), st.integers(-3, 300).filter(lambda n: low <= n <= high)
    )


def scalar(fd: FD, ids: Sequence[str]) -> st.SearchStrategy[Any]:
    """Values for one non-message field."""
    return _scalar(fd, tuple(ids))


@functools.cache
def _scalar(fd: FD, ids: tuple[str, ...]) -> st.SearchStrategy[Any]:
    rules = _rules(fd)
    if fd.type == FD.TYPE_STRING:
        return _text(rules, ids)
    if fd.type == FD.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64),
            st.integers(1_000, 200_000).map(lambda n: b"\x00\xff" * (n // 2)),
            st.sampled_from([b"\x89PNG\r\n\x1a\n", b"%PDF-1.7\n", b"MZ\x90\x00", b"\xef\xbb\xbfhello"]),
        )
    if fd.type == FD.TYPE_BOOL:
        return st.booleans()
    if fd.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(width=32 if fd.type == FD.TYPE_FLOAT else 64)
    if fd.type == FD.TYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        if fd.enum_type.is_closed:
            return st.sampled_from(known)
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1), st.sampled_from([99, -1]))
    return _integer(fd, rules)


def _timestamp(cls: type[Message]) -> st.SearchStrategy[Message]:
    # Year 0, year 10000 and beyond, negative nanos, nanos past a second: none is a valid Timestamp.
    seconds = st.one_of(
        st.integers(-(2**63), 2**63 - 1), st.sampled_from([-62135596801, 253402300800, 0, -1, 1_700_000_000])
    )
    nanos = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 999_999_999, 1_000_000_000]))
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def message(descriptor: _descriptor.Descriptor, ids: Sequence[str] = (), depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type: each field present or not, nested ones up to a small depth."""
    return _message(descriptor, tuple(ids), depth)


@functools.cache
def _lists(element: st.SearchStrategy[Any], most: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(element, max_size=most)


@functools.cache
def _message(descriptor: _descriptor.Descriptor, ids: tuple[str, ...], depth: int) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamp(cls)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        out = cls()
        for fd in descriptor.fields:
            if not draw(st.booleans()):
                continue
            _fill(draw, out, fd, ids, depth)
        return out

    return build()


def _fill(draw: st.DrawFn, out: Message, fd: FD, ids: Sequence[str], depth: int) -> None:
    rules = _rules(fd)
    sub = fd.message_type
    if sub is not None and sub.GetOptions().map_entry:
        keys = scalar(sub.fields_by_name["key"], ids)
        value_fd = sub.fields_by_name["value"]
        target = getattr(out, fd.name)
        for key in draw(_lists(keys, 3)):
            if value_fd.message_type is not None:
                if depth < 2:
                    target[key].CopyFrom(draw(message(value_fd.message_type, ids, depth + 1)))
            else:
                target[key] = draw(scalar(value_fd, ids))
        return
    if sub is not None and depth >= 3:
        return
    element = message(sub, ids, depth + 1) if sub is not None else scalar(fd, ids)
    if fd.is_repeated:
        most = (rules.max_items + 1) if rules and rules.max_items else 4
        items = draw(_lists(element, min(most, 6)))
        getattr(out, fd.name).extend(items)
    elif sub is not None:
        getattr(out, fd.name).CopyFrom(draw(element))
    else:
        setattr(out, fd.name, draw(element))


def malformed() -> st.SearchStrategy[bytes]:
    """Raw bytes that are rarely a valid message: random, truncated varints, bad UTF-8, deep nesting, huge lengths."""
    return st.one_of(
        st.binary(max_size=256),
        st.sampled_from(
            [
                b"\x0a\x02\xff\xfe",
                b"\x08\xff",
                b"\x0a\xff\xff\xff\xff\x0f",
                b"\x1b" * 200 + b"\x1c" * 200,
                b"\x0a\x80\x01" * 100,
                b"\x07",
                b"\xff" * 32,
                b"\x0a" + b"\x7f" + b"a" * 10,
            ]
        ),
        st.integers(1, 120).map(lambda n: b"\x0a\x7e" * n),
    )
