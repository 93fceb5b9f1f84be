"""Content types from the bytes (libmagic, through python-magic), the allowlist, and what may show inline.

The declared type is a hint only. Anything a browser could run as active content (HTML, SVG, XML,
JavaScript and the like) is never marked inline: it is offered as a download.
"""

from __future__ import annotations

import fnmatch

import magic

SNIFF_BYTES = 8192
# What a browser may display in place, served with nosniff: raster images, audio, video, plain text, PDF.
_INLINE = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "audio/*",
    "video/*",
    "text/plain",
    "application/pdf",
)
_ACTIVE_WORDS = ("html", "svg", "xml", "javascript", "ecmascript", "xhtml")

_detector = magic.Magic(mime=True)


def detect(head: bytes) -> str:
    """The media type of content that starts with `head`."""
    if not head:
        return "application/x-empty"
    return str(_detector.from_buffer(head)) or "application/octet-stream"


# Kinds of text the bytes cannot tell from plain text, and that nothing runs: the declaration may name them.
_PLAIN_TEXTS = ("text/plain", "text/csv", "text/markdown", "text/tab-separated-values")


def refine(detected: str, declared: str) -> str:
    """The declared type where the bytes only say "plain text" and the declaration is a harmless kind of
    text (text/csv, text/markdown); otherwise what the bytes say."""
    wanted = declared.strip().lower().split(";", 1)[0]
    return wanted if detected == "text/plain" and wanted in _PLAIN_TEXTS else detected


def allowed(content_type: str, patterns: tuple[str, ...]) -> bool:
    """Whether `content_type` matches one of the allowlist's patterns (`image/*`, `application/pdf`)."""
    return any(fnmatch.fnmatchcase(content_type, p) for p in patterns)


def inline_safe(content_type: str) -> bool:
    """Whether a browser may display this type in place."""
    if any(word in content_type for word in _ACTIVE_WORDS):
        return False
    return any(fnmatch.fnmatchcase(content_type, p) for p in _INLINE)
