"""What the device page shows of one device: who it is, where it is and why, its enrollment,
and its values in kmeweb, at the last pull and (after Check with Samsung) in KME now.

Reads only, by primary key and the (device_id, id) / (target_type, target_id, id) indexes: a
handful of small queries whatever the size of the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kmeweb.audit.models import AuditEvent
from kmeweb.devices import services as devices
from kmeweb.devices.models import Approval, Device, DeviceEvent, DeviceEventKind
from kmeweb.directory import services as directory
from kmeweb.directory.models import EndUser
from kmeweb.errors import NotFound
from kmeweb.identifiers import normalize_serial
from kmeweb.ids import parse_id
from kmeweb.integration.models import PortalPolicy, Reseller, Upload, get_integration
from kmeweb.outbox.models import SyncState
from kmeweb.pagination import Page, paginate
from kmeweb.profiles.models import Profile
from kmeweb.rules.models import RoutingRule

#: Device events that say why a device is where it is (the latest one wins).
PLACING_EVENTS = (
    DeviceEventKind.UPLOADED,
    DeviceEventKind.APPROVED,
    DeviceEventKind.MOVED,
    DeviceEventKind.UNASSIGNED,
    DeviceEventKind.PORTAL_CHANGE,
)
#: Audit actions targeted at one device that say the same, with the words the page uses.
PLACING_ACTIONS = {
    "device.changed_in_portal": DeviceEventKind.PORTAL_CHANGE.label,
    "device.approve": DeviceEventKind.APPROVED.label,
    "device.move": DeviceEventKind.MOVED.label,
    "device.unassign": DeviceEventKind.UNASSIGNED.label,
}


@dataclass(frozen=True)
class Why:
    """Why the device is where it is: what happened, by which admin ("" when automatic: the
    page then names the routing rule that placed it), when."""

    what: str
    by: str = ""
    at: datetime | None = None
    automatic: bool = False


@dataclass(frozen=True)
class Values:
    """Approval, profile and user of the device, as one side holds them."""

    approval: str | None
    profile_id: int | None
    profile_name: str | None
    user: str | None

    def key(self) -> tuple[Any, ...]:
        return (self.approval, self.profile_id, (self.user or "").lower() or None)


@dataclass
class DevicePage:
    device: Device
    profile: Profile | None
    user: EndUser | None
    upload: Upload | None
    reseller: Reseller | None
    rule: RoutingRule | None
    why: Why
    ours: Values
    seen: Values | None
    policy: str
    names: dict[int, str] = field(default_factory=dict)

    @property
    def pending_local(self) -> bool:
        return self.device.sync_state == SyncState.PENDING

    def kme_now(self, kme: dict[str, Any] | None) -> Values | None:
        """The values Check with Samsung found (None when it found nothing or has not run)."""
        if not kme or not kme.get("found"):
            return None
        profile_id = kme.get("profile_id")
        return Values(
            kme.get("approval"),
            profile_id,
            self.names.get(profile_id) if profile_id else kme.get("profile_name"),
            kme.get("user"),
        )

    def conflict_rule(self) -> str:
        """design.md 5 in one sentence, for this device now."""
        if self.pending_local:
            return (
                "kmeweb has a change for this device waiting to be sent, so kmeweb's value "
                "stays and goes to Samsung at the next push."
            )
        if self.policy == PortalPolicy.OURS:
            return (
                "With no change waiting here, kmeweb is the source of truth: a pull that finds "
                "another value in Samsung sends kmeweb's again."
            )
        return (
            "With no change waiting here, a pull that finds another value in Samsung takes "
            "Samsung's (the integration's portal policy)."
        )


def read_device_page(session: Session, device_id: int) -> DevicePage:
    """Everything the device page shows but the history and the last check.
    Raises NotFound."""
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("No such device.")
    upload = session.get(Upload, device.upload_id) if device.upload_id else None
    reseller = session.get(Reseller, upload.reseller_id) if upload and upload.reseller_id else None
    rule = session.get(RoutingRule, device.rule_id) if device.rule_id else None
    user = session.get(EndUser, device.end_user_id) if device.end_user_id else None
    profile_ids = {i for i in (device.profile_id, device.kme_seen_profile_id) if i}
    profiles = {
        p.id: p for p in session.scalars(select(Profile).where(Profile.id.in_(profile_ids)))
    }
    names = {p.id: p.name for p in profiles.values()}
    ours = Values(
        device.approval,
        device.profile_id,
        names.get(device.profile_id or 0),
        user.username if user else None,
    )
    seen = None
    if device.kme_seen_at is not None and device.kme_missing_at is None:
        seen = Values(
            device.kme_seen_approval,
            device.kme_seen_profile_id,
            names.get(device.kme_seen_profile_id or 0),
            device.kme_seen_user,
        )
    integration = get_integration(session)
    return DevicePage(
        device=device,
        profile=profiles.get(device.profile_id or 0),
        user=user,
        upload=upload,
        reseller=reseller,
        rule=rule,
        why=why_here(session, device, rule),
        ours=ours,
        seen=seen,
        policy=integration.portal_policy if integration else PortalPolicy.ADOPT,
        names=names,
    )


def user_choices(session: Session, selected: Any, limit: int = 50) -> list[tuple[int, str]]:
    """(id, label) of the users a picker offers: the selected one first, then the first
    `limit` by username."""
    chosen = session.get(EndUser, parse_id(selected)) if parse_id(selected) else None
    users = [chosen] if chosen is not None else []
    users += [u for u in directory.search_users(session, "", limit) if u is not chosen]
    return [
        (u.id, f"{u.display_name} ({u.username})" if u.display_name else u.username) for u in users
    ]


def why_here(session: Session, device: Device, rule: RoutingRule | None) -> Why:
    """The latest device event or audit event (targeted at this device) that placed it, with
    the routing rule when the rules placed it; an unsettled portal change comes first."""
    if device.portal_changed_at is not None:
        return Why(DeviceEventKind.PORTAL_CHANGE.label, at=device.portal_changed_at)
    event = session.scalar(
        select(DeviceEvent)
        .where(DeviceEvent.device_id == device.id, DeviceEvent.kind.in_(PLACING_EVENTS))
        .order_by(DeviceEvent.id.desc())
        .limit(1)
    )
    audited = session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.target_type == "device",
            AuditEvent.target_id == str(device.id),
            AuditEvent.action.in_(PLACING_ACTIONS),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    candidates = []
    if event is not None:
        candidates.append((event.at, DeviceEventKind(event.kind).label, event.actor))
    if audited is not None:
        candidates.append((audited.at, PLACING_ACTIONS[audited.action], audited.actor))
    if not candidates:
        if rule is not None:
            return Why("Placed", automatic=True)
        if device.approval == Approval.PENDING:
            return Why("Waiting for approval")
        return Why("—")
    at, what, actor = max(candidates, key=lambda c: c[0])
    if actor and "@" in actor:  # an admin (system actors are "sync", "rules", "device", ...)
        return Why(what, by=actor, at=at)
    if what in (DeviceEventKind.PORTAL_CHANGE.label, DeviceEventKind.UPLOADED.label):
        return Why(what, at=at)
    return Why(what, at=at, automatic=True)


#: Results of the console-wide search: counted up to this many ("more than N").
SEARCH_COUNT_LIMIT = 1000


@dataclass(frozen=True)
class SearchResult:
    """The console-wide search: the one device found (go straight to it), or a page of rows
    (kmeweb.devices.services.device_rows) with the Page that counts them."""

    single: int | None
    page: Page | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def find_devices(session: Session, q: str, page: int, per_page: int) -> SearchResult:
    """Devices whose IMEI/MEID or serial number is `q` (the one device, at once by the unique
    indexes), else what the device table's search finds across profiles (IMEI, MEID, serial,
    model, user's name or email), by id, a page at a time."""
    q = q.strip()
    if not q:
        return SearchResult(None)
    exact = list(
        session.scalars(
            select(Device.id)
            .where(or_(Device.imei == q.upper(), Device.serial == normalize_serial(q)))
            .limit(2)
        )
    )
    if len(exact) == 1:
        return SearchResult(exact[0])
    stmt = devices.search_devices(q=q).order_by(Device.id)
    found = paginate(session, stmt, page, per_page, count_limit=SEARCH_COUNT_LIMIT)
    if found.total == 1 and not found.more:
        return SearchResult(found.items[0])
    return SearchResult(None, found, devices.device_rows(session, found.items))
