from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Text,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kmeweb.enums import Choice
from kmeweb.extensions import UTCDateTime, db, utcnow
from kmeweb.outbox.models import SyncState


class Approval(Choice):
    """Whether the customer approved a device's upload (`device.approval`)."""

    PENDING = "pending"
    APPROVED = "approved"


class Registration(Choice):
    """Whether a device has enrolled (`device.registered_at` set or not): the device table's
    Registration filter."""

    REGISTERED = "registered", "Registered"
    PENDING = "pending", "Not registered"


class KmeState(Choice):
    """What the pull found of a device in KME that an admin should look at: the device table's
    "Samsung" filter (`device.portal_changed_at`, `device.kme_missing_at` set)."""

    CHANGED = "changed", "Changed in Samsung portal"
    MISSING = "missing", "Not found in KME"


class DeviceSync(db.Model):
    """A device's sync bookkeeping: whether KME has every change of it (`sync_state`, and why
    the last change failed) and what KME held for it when kmeweb last pushed or pulled it
    (`kme_seen_*`). A device without a row is synced and was never seen in KME (every device a
    self-maintained profile holds, until it moves to a KME profile).

    Kept out of the `device` row on purpose: every change KME must hear about writes the sync
    state twice (pending, then synced), and on PostgreSQL a write of the wide device row is a
    new version with an entry in each of its dozen indexes; here it is a narrow row and two
    index entries (bench/approve.py: the push of 100,000 approved devices). Write it with
    `kmeweb.outbox.services.write_device_sync` (an upsert: the row may not exist yet)."""

    __tablename__ = "device_sync"
    __table_args__ = (
        # Only the devices KME still has to learn about: sync status reads these, not all.
        Index(
            "ix_device_sync_unsynced",
            "sync_state",
            "device_id",
            sqlite_where=text("sync_state != 'synced'"),
            postgresql_where=text("sync_state <> 'synced'"),
        ),
    )

    device_id: Mapped[int] = mapped_column(
        ForeignKey("device.id", ondelete="CASCADE"), primary_key=True
    )
    sync_state: Mapped[str] = mapped_column(
        String(16), default=SyncState.SYNCED, server_default=SyncState.SYNCED.value
    )
    sync_error: Mapped[str | None] = mapped_column(Text)
    # What KME held for the device at the last pull that read it or the last push that changed
    # it (its approval, the kmeweb profile its KME profile maps to, its user name) and when.
    kme_seen_approval: Mapped[str | None] = mapped_column(String(16))
    kme_seen_profile_id: Mapped[int | None] = mapped_column(Integer)
    kme_seen_user: Mapped[str | None] = mapped_column(String(254))
    kme_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


#: A device's sync state in a query that outer-joins `DeviceSync`: synced without a row.
JOINED_SYNC_STATE = func.coalesce(DeviceSync.sync_state, SyncState.SYNCED).label("sync_state")


def unsynced_device_ids(state: str | None = None) -> Select:
    """Ids of the devices KME still has to learn about (those in `state`, when given), read
    from ix_device_sync_unsynced: its `!= 'synced'` predicate is spelled out, as SQLite needs
    to use a partial index."""
    stmt = select(DeviceSync.device_id).where(DeviceSync.sync_state != SyncState.SYNCED)
    return stmt if state is None else stmt.where(DeviceSync.sync_state == state)


def _sync_attribute(name: str, default: Any = None) -> hybrid_property:
    """`Device.<name>`: on an instance, its `device_sync` row's value (set creates the row);
    in SQL, a correlated subquery of it, `default` without a row (fine for a page of rows; a
    query over many devices joins `DeviceSync` itself)."""

    def fget(device: Device) -> Any:
        row = device.sync
        return default if row is None else getattr(row, name)

    def fset(device: Device, value: Any) -> None:
        if device.sync is None:
            device.sync = DeviceSync()
        setattr(device.sync, name, value)

    def expr(cls: type[Device]) -> Any:
        column = getattr(DeviceSync, name)
        value = select(column).where(DeviceSync.device_id == cls.id).scalar_subquery()
        # `cls.id` outside the subquery too, so that a query naming no other column of device
        # still reads the device table and the subquery correlates to it (without: the
        # subquery alone reads device, and answers for some device, not each).
        # The default as SQL text, not a parameter: a GROUP BY of the attribute then repeats
        # the select's expression exactly, as PostgreSQL requires.
        constant = (
            cast(null(), column.type) if default is None else literal_column(f"'{default}'", String)
        )
        fallback = case((cls.id.is_not(None), constant), else_=null())
        return func.coalesce(value, fallback).label(name)

    return hybrid_property(fget, fset, expr=expr)


class Device(db.Model):
    """A Samsung device known to KME; profile_id is null only while pending approval."""

    __tablename__ = "device"
    __table_args__ = (
        Index("ix_device_upload_id", "upload_id"),
        # Pending devices per upload (the Uploads tab) from the index alone.
        Index("ix_device_approval_upload_id", "approval", "upload_id"),
        # A profile's devices: by IMEI (the profile page), counted (the lists).
        Index("ix_device_profile_imei", "profile_id", "imei"),
        Index("ix_device_profile_registered", "profile_id", "registered_at"),
        # A profile's devices by id: the API's device list pages a profile by keyset on id.
        Index("ix_device_profile_keyset", "profile_id", "id"),
        # A user's devices (the API's search by user; SET NULL when a user is deleted).
        Index("ix_device_end_user_id", "end_user_id"),
        # A profile's devices placed by one rule (the device table's "Placed by rule" filter).
        Index("ix_device_profile_rule", "profile_id", "rule_id"),
        # Only the devices KME still has to learn about: sync status reads these, not all.
        # Devices changed in the Samsung portal and not yet settled by an admin (Overview count,
        # the profile page's filter), and devices a full pull no longer found in KME.
        Index(
            "ix_device_portal_changed",
            "profile_id",
            sqlite_where=text("portal_changed_at IS NOT NULL"),
            postgresql_where=text("portal_changed_at IS NOT NULL"),
        ),
        Index(
            "ix_device_kme_missing",
            "profile_id",
            sqlite_where=text("kme_missing_at IS NOT NULL"),
            postgresql_where=text("kme_missing_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    imei: Mapped[str | None] = mapped_column(String(16), unique=True)
    serial: Mapped[str | None] = mapped_column(String(16), unique=True)
    model: Mapped[str | None] = mapped_column(String(64))
    upload_id: Mapped[int | None] = mapped_column(ForeignKey("upload.id", ondelete="SET NULL"))
    approval: Mapped[str] = mapped_column(String(16), default=Approval.PENDING)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profile.id"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_user.id", ondelete="SET NULL"))
    # The routing rule (and its version) that placed the device, and why it is not where that
    # rule says when it could not be followed (kmeweb.rules).
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("routing_rule.id", ondelete="SET NULL"))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    rule_note: Mapped[str | None] = mapped_column(String(200))
    # When the routing rules first saw the device (the pull routes each new device once; later
    # rule changes reach it only through Apply rules to existing devices or an approval).
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    enrollment_password_enc: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # First successful enrollment (POST /enroll) and the agent version it last enrolled with.
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent_version: Mapped[str | None] = mapped_column(String(64))
    kme_device_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    kme_status: Mapped[str | None] = mapped_column(String(32))
    # Whether KME has every change of the device, and what KME held for it: in `device_sync`
    # (see DeviceSync), read and set here as if they were the device's own columns.
    sync: Mapped[DeviceSync | None] = relationship(
        lazy="select", cascade="all, delete-orphan", passive_deletes=True
    )
    sync_state = _sync_attribute("sync_state", SyncState.SYNCED)
    sync_error = _sync_attribute("sync_error")
    kme_seen_approval = _sync_attribute("kme_seen_approval")
    kme_seen_profile_id = _sync_attribute("kme_seen_profile_id")
    kme_seen_user = _sync_attribute("kme_seen_user")
    kme_seen_at = _sync_attribute("kme_seen_at")
    # A change made in the Samsung portal that kmeweb did not make: when the pull saw it and
    # kmeweb's values before it ({"approval", "profile_id", ...}); cleared when an admin settles
    # it (Send ours again / Take Samsung's).
    portal_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    portal_previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Set when the daily full pull no longer finds the device in KME (never dropped silently).
    kme_missing_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last refused enrollment attempt of this device: its error code and time.
    last_refusal_code: Mapped[str | None] = mapped_column(String(32))
    last_refusal_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    @property
    def identifier(self) -> str:
        return self.imei or self.serial or ""


class DeviceEventKind(Choice):
    """What happened to one device (`device_event.kind`): its history's entries besides the
    audit events that target it."""

    UPLOADED = "uploaded", "Uploaded by the reseller"
    APPROVED = "approved", "Approved"
    MOVED = "moved", "Moved"
    UNASSIGNED = "unassigned", "Unassigned"
    USER = "user", "Associated user changed"
    ATTRIBUTES = "attributes", "Attributes edited"
    PUSHED = "pushed", "Sent to Samsung"
    PORTAL_CHANGE = "portal_change", "Changed in the Samsung portal"
    NOT_IN_KME = "not_in_kme", "Not found in KME"
    ENROLL_ACCEPTED = "enroll_accepted", "Enrollment accepted"
    ENROLL_REFUSED = "enroll_refused", "Enrollment refused"
    CHECKED = "checked", "Checked with Samsung"
    DELETED = "deleted", "Deleted"


class DeviceEvent(db.Model):
    """One entry of a device's history. `device_id` has no foreign key on purpose: the history
    outlives a deleted device. `change_id` names the outbox change that carries it to KME (its
    attempts are in `change_attempt`); no foreign key either, the purge removes changes first."""

    __tablename__ = "device_event"
    __table_args__ = (Index("ix_device_event_device", "device_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(254))
    change_id: Mapped[int | None] = mapped_column(Integer)
    operation_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
