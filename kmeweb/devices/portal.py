"""PLACEHOLDER until the portal helper's module lands on main (git merge main takes theirs):
settling a device changed in the Samsung portal. Only the two signatures the device page
calls; both refuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from kmeweb.errors import ValidationError
from kmeweb.operations.models import Operation

NOT_YET = "Settling a change made in the Samsung portal is not available yet."


def send_ours_again(session: Session, device_ids: Sequence[int], actor: Any) -> Operation | None:
    """Placeholder. Raises ValidationError."""
    raise ValidationError(NOT_YET, field="device_ids")


def take_samsungs(session: Session, device_ids: Sequence[int], actor: Any) -> int:
    """Placeholder. Raises ValidationError."""
    raise ValidationError(NOT_YET, field="device_ids")
