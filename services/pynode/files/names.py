"""File names are display names only: no paths, no control characters, bounded length."""

from __future__ import annotations

import unicodedata

MAX_NAME = 255


def display_name(raw: str) -> str:
    """`raw` made safe to show and to offer as a download name: the last path segment, without control or
    format characters, trimmed, at most 255 characters, never empty, `.` or `..`."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in "\u2028\u2029")
    name = unicodedata.normalize("NFC", name).strip().strip(".").strip()
    return name[:MAX_NAME] or "file"  # the contract already bounds what clients send
