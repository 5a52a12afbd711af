"""Device identifiers as the simulator reads kme-api.md section 6 (its own implementation)."""

from __future__ import annotations

import re

_SERIAL = re.compile(r"[A-Z0-9]{8,16}")
_MEID = re.compile(r"[0-9A-F]{14}")


def luhn_digit(digits: str) -> int:
    """The Luhn check digit of 14 IMEI digits (double every second digit from the left)."""
    total = 0
    for n, ch in enumerate(digits):
        d = int(ch)
        if n % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def kind_of(ident: str) -> str:
    """ "imei", "meid", "serial" or "invalid"."""
    text = ident.strip().upper()
    if text.isdigit() and len(text) == 15:
        return "imei" if luhn_digit(text[:14]) == int(text[14]) else "invalid"
    if _MEID.fullmatch(text) and text[:2] >= "A0":
        return "meid"
    return "serial" if _SERIAL.fullmatch(text) else "invalid"
