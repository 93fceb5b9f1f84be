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


def plain_text_problem(value: str) -> str | None:
    """Why `value` is not plain text another person can be shown (a reason code), or None. The one rule for
    names and titles, at the contract (`plain_text`) and in the services that take such text otherwise."""
    if has_hidden(value):
        return "CONTROL_CHARACTER"
    if value and is_blank(value):
        return "BLANK"
    return None


def visible(value: str) -> str:
    """`value` without the characters `has_hidden` refuses: for text made from other text (a title from a
    message), which may hold controls a title may not."""
    return "".join(c for c in value if unicodedata.category(c) not in _HIDDEN_CATEGORIES)


# --- reactions ---------------------------------------------------------------------------------------------

_REACTION_WORD = re.compile(r"(?=[^A-Za-z0-9]*[A-Za-z0-9])[A-Za-z0-9_+:-]{1,16}")
_ZWJ, _KEYCAP = "\u200d", "\u20e3"
_VARIATIONS = frozenset("\ufe0e\ufe0f")
_KEYCAP_BASES = frozenset("0123456789#*")
_BLACK_FLAG = "\U0001f3f4"  # with tag characters: the flags of England, Scotland, Wales
_MAX_JOINED = 8  # a family of four with skin tones stays well under this


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _emoji_part(part: str) -> bool:
    """One emoji between zero-width joiners: a symbol with its variation selector and skin tone, a keycap, a
    flag of two regional indicators, or a black flag with its tags."""
    if len(part) == 2 and _regional(part[0]) and _regional(part[1]):
        return True
    if part[:1] in _KEYCAP_BASES:
        return part[1:] in (_KEYCAP, "\ufe0f" + _KEYCAP)
    if not part or unicodedata.category(part[0]) != "So" or _regional(part[0]):
        return False
    rest = part[1:]
    if part[0] == _BLACK_FLAG and rest:
        return rest[-1] == "\U000e007f" and all("\U000e0020" <= c <= "\U000e007e" for c in rest[:-1])
    if rest[:1] in _VARIATIONS:
        rest = rest[1:]
    if rest[:1] and "\U0001f3fb" <= rest[0] <= "\U0001f3ff":  # skin tone
        rest = rest[1:]
    return rest in ("", "\ufe0f")


def reaction_problem(value: str) -> str | None:
    """Why `value` is not a reaction (a reason code), or None. A reaction is one emoji (joined sequences,
    skin tones, flags and keycaps included) or a short ASCII word such as `+1` or `:tada:`: nothing that
    hides (zero-width spaces, bidi overrides, ESC) and nothing long enough to be a message."""
    if _REACTION_WORD.fullmatch(value):
        return None
    parts = value.split(_ZWJ)
    if len(parts) <= _MAX_JOINED and all(_emoji_part(part) for part in parts):
        return None
    return "NOT_A_REACTION"


# --- display -----------------------------------------------------------------------------------------------

# Shown as an escape rather than obeyed: controls (C0, DEL, C1, ESC above all), bidi embeddings, overrides
# and isolates, and the zero-width characters, whatever their category in the running Python's Unicode. The
# zero-width joiner stays: it only joins emoji.
_TERMINAL_UNSAFE = frozenset(
    [chr(c) for c in range(0x20) if chr(c) not in "\n\t"]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + list("\u200b\u200c\u200e\u200f\u061c\u2028\u2029\u2060\ufeff")
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)


def for_terminal(value: str, *, newlines: bool = True) -> str:
    """`value` safe to print on a terminal: every control or invisible direction character is written as a
    visible `\\x1b`-style escape, so another person's text cannot move the cursor, reset the screen or
    reorder what is shown. `newlines=False` escapes line breaks and tabs too (for one-line fields)."""
    out = []
    for char in value:
        unsafe = char in _TERMINAL_UNSAFE or (unicodedata.category(char) == "Cf" and char != _ZWJ)
        if unsafe or (not newlines and char in "\n\t"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)
