"""Database ids as requests carry them: one parse for every form field and query argument.

An id is a decimal string (ASCII digits, surrounding blanks ignored) from 1 to MAX_DB_INT, the
largest value the database's integer columns hold. Anything else names no row: a number past
the range would be an OverflowError on SQLite and an out-of-range error on PostgreSQL, and a
non-number must not quietly mean "none". `parse_id` answers None for it (the caller answers
404 or skips it); `optional_id` raises the 422 message next to the field.
"""

from __future__ import annotations

from typing import Any

from kmeweb.errors import ValidationError

# The largest id the database's integer columns hold (PostgreSQL INTEGER).
MAX_DB_INT = 2**31 - 1
ID_DIGITS_MAX = len(str(MAX_DB_INT))


def parse_id(raw: Any) -> int | None:
    """A database id from a request value (str or int), or None for anything else."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 1 <= raw <= MAX_DB_INT else None
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > ID_DIGITS_MAX:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_DB_INT else None


def optional_id(raw: Any, field: str, message: str = "Choose one from the list.") -> int | None:
    """An id, or None when the value is empty (None or blank).

    Raises ValidationError(message, field) for a value that is no id (garbage, out of range).
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    value = parse_id(raw)
    if value is None:
        raise ValidationError(message, field=field)
    return value


def parse_number(raw: Any) -> int | None:
    """A non-negative whole number a form carries (a count, a version), or None for anything
    else; bounded like an id so that it can be compared with a column."""
    if isinstance(raw, str) and raw.strip() == "0":
        return 0
    return parse_id(raw)
