"""File names are display names only: no paths, no control characters, bounded length."""

from __future__ import annotations

import unicodedata

MAX_NAME = 255


def display_name(raw: str) -> str:
    """`raw` made safe to show and to offer as a download name: the last path segment, without control or
    format characters, trimmed, at most 255 characters (the extension kept), never empty, `.` or `..`."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C" and c not in "\u2028\u2029")
    name = unicodedata.normalize("NFC", name).strip().strip(".").strip()
    if len(name) > MAX_NAME:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_NAME - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_NAME]
    return name or "file"
