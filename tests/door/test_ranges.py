"""Range headers as RFC 9110 reads them, for a 100-byte file."""

from __future__ import annotations

import pytest

from pynode.door.ranges import ByteRange, Unsatisfiable, parse


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 10, 100)),
        ("bytes=90-", ByteRange(90, 10, 100)),
        ("bytes=-5", ByteRange(95, 5, 100)),
        ("bytes=-500", ByteRange(0, 100, 100)),  # a suffix longer than the file: all of it
        ("bytes=50-500", ByteRange(50, 50, 100)),  # past the end: to the end
        ("bytes = 1-2", ByteRange(1, 2, 100)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file
        ("bytes=9-3", None),  # invalid: ignored
        ("items=0-9", None),
        ("bytes=-", None),
        ("", None),
        ("bytes=\uff11-2", None),  # a fullwidth 1: not an ASCII digit, so no range at all
        ("bytes=\u0663-5", None),  # an Arabic-Indic 3
        ("bytes=" + "1" * 5000 + "-", None),  # no offset has 5,000 digits (Python refuses past 4,300: a 500)
    ],
)
def test_ranges(header: str, expected: ByteRange | None) -> None:
    assert parse(header, 100) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0), ("bytes=-3", 0)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse(header, size)


def test_content_range() -> None:
    assert ByteRange(95, 5, 100).content_range == "bytes 95-99/100"
