"""Public room codes: `xxx-yyyy-zzz`, ten lowercase letters drawn from a CSPRNG (26^10, about 2^47)."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_lowercase
_GROUPS = (3, 4, 3)
# Accepted spellings of a code: any case, with the two dashes or without them. re.ASCII keeps
# IGNORECASE from letting non-ASCII look-alikes (the Kelvin sign matches `k`) through.
_INPUT = re.compile(r"([a-z]{3})-?([a-z]{4})-?([a-z]{3})", re.IGNORECASE | re.ASCII)
CODE_PATTERN = r"^[a-z]{3}-[a-z]{4}-[a-z]{3}$"
# The same accepted spellings as a JSON Schema (ECMA-262) pattern, for the API description: what
# `normalize_room_code` takes, no more and no less (tests/unit/test_room_codes.py holds them together).
INPUT_PATTERN = r"^[A-Za-z]{3}-?[A-Za-z]{4}-?[A-Za-z]{3}$"


_LETTERS = sum(_GROUPS)
_CODES = len(_ALPHABET) ** _LETTERS


def generate_room_code() -> str:
    """Return a fresh random code such as `abc-defg-hij`."""
    # One draw for the whole code, its letters the digits of the number in base 26: a draw per
    # letter would cost a system call each.
    number = secrets.randbelow(_CODES)
    letters = []
    for _ in range(_LETTERS):
        number, digit = divmod(number, len(_ALPHABET))
        letters.append(_ALPHABET[digit])
    text = "".join(letters)
    return f"{text[:3]}-{text[3:7]}-{text[7:]}"


def normalize_room_code(raw: str) -> str | None:
    """Return the canonical form of a code typed by a person, or None if it cannot be one.

    `ABC-DEFG-HIJ` and `abcdefghij` both become `abc-defg-hij`.
    """
    match = _INPUT.fullmatch(raw)
    if match is None:
        return None
    return "-".join(match.groups()).lower()
