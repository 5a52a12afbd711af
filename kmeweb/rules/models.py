from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow


class RuleAction(Choice):
    """What a routing rule does with a new device (`routing_rule.action`)."""

    APPROVE = "approve", "Approve at once"
    HOLD = "hold", "Hold for approval"


class RoutingRule(db.Model):
    """One routing rule: conditions that must all hold, and where matching devices go.

    Rules are tried by `position`; the first that matches wins. Exactly one rule is the
    catch-all (`catch_all`, always last, no conditions): what happens to everything else.
    `profile_id` None with `to_default` False means the profile was deleted: the rule is
    broken and the devices it matches wait in the Default Profile. `version` grows with each
    edit; a device keeps the rule and the version that placed it.
    """

    __tablename__ = "routing_rule"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    catch_all: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Conditions (all that are set must hold; within one, any value may match).
    reseller_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    order_patterns: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_patterns: Mapped[list[str]] = mapped_column(JSON, default=list)
    identifiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    imei_from: Mapped[str | None] = mapped_column(String(15))
    imei_to: Mapped[str | None] = mapped_column(String(15))
    # Actions.
    action: Mapped[str] = mapped_column(String(16), default=RuleAction.HOLD)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profile.id", ondelete="SET NULL"))
    to_default: Mapped[bool] = mapped_column(Boolean, default=True)
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_user.id", ondelete="SET NULL"))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(254))
