"""Text a person can read and type back: the checks behind the contracts' `plain_text` rule and e-mail format.

Names and e-mail addresses are shown to other people and typed back by their owners, so they must not hide
anything: no control or format characters (NUL, zero-width joiners, right-to-left overrides), nothing made
only of invisible characters, no compatibility forms (fullwidth or mathematical letters that NFKC folds),
and for e-mail addresses no label that mixes scripts (a Cyrillic a among Latin letters), the confusables
of Unicode TS #39, kept to what the standard library can tell.
"""

from __future__ import annotations

import re
import unicodedata

# Categories nobody can see or type: controls, format characters, private use, surrogates, unassigned,
# line and paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# Letters and symbols that render as nothing (fillers, the braille blank, the Mongolian vowel separator).
_BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# Scripts that are written together (UTS #39 "highly restrictive" combinations, with Latin).
_WRITTEN_TOGETHER = (
    frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "CJK", "HANGUL"}),
    frozenset({"LATIN", "CJK", "BOPOMOFO"}),
)
_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def has_hidden(value: str) -> bool:
    """Whether `value` holds a character that cannot be seen or typed (NUL and other controls included)."""
    return any(unicodedata.category(c) in _HIDDEN_CATEGORIES for c in value)


def is_blank(value: str) -> bool:
    """Whether `value` shows nothing: only spaces, marks and invisible look-alikes."""
    return all(c.isspace() or c in _BLANK_LOOKALIKES or unicodedata.category(c)[0] in "MC" for c in value)


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name; None for digits, marks and punctuation."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    first = name.split(" ", 1)[0]
    if first.startswith("KATAKANA") or first == "HALFWIDTH":
        return "KATAKANA"
    return first or None


def mixes_scripts(label: str) -> bool:
    """Whether one label mixes scripts that are not written together."""
    scripts = {s for s in map(_script, label) if s is not None}
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _WRITTEN_TOGETHER)


def email_problem(value: str) -> str | None:
    """Why `value` is not an e-mail address a person could type back (a reason code), or None."""
    if not _EMAIL_SHAPE.match(value.strip()):
        return "BAD_FORMAT"
    if has_hidden(value) or unicodedata.normalize("NFKC", value) != value:
        return "CONFUSABLE"
    labels = re.split(r"[@.]", value.strip())
    if any(mixes_scripts(label) for label in labels):
        return "CONFUSABLE"
    return None
