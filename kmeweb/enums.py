"""The base of every status and kind a column stores: its value, and the label the console
shows for it, side by side (NetBox's choices.py habit). Each area declares its own in its
models.py; code compares with the members, never with bare strings (tests/test_architecture.py
looks for those)."""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class Choice(StrEnum):
    """A stored value with its label: `KME = "kme", "Samsung Knox Mobile Enrollment"`. Without
    a label the value is shown as it is (the status badges show "pending", "error", ...)."""

    label: str

    def __new__(cls, value: str, label: str | None = None) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = value if label is None else label
        return member

    @classmethod
    def labels(cls) -> dict[str, str]:
        """{value: label} of every member, in declaration order."""
        return {member.value: member.label for member in cls}
