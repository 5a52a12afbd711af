"""Words the console shows with numbers: "1 device", "1,450 devices"."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` with its thousands separator and `noun`, plural unless n is 1 (`plural` when the
    plural is not noun + "s")."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"
