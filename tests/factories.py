"""Factories `make_<noun>(session, **over)`: rows built directly and committed, fast.

They bypass the services on purpose (no outbox rows, no audit) so a test sees only what the
service under test wrote. `bulk_devices` inserts thousands of devices with one executemany.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from kmeweb.devices.models import Device, DeviceSync
from kmeweb.directory.models import EndUser
from kmeweb.identifiers import luhn_check_digit
from kmeweb.integration.models import Reseller, Upload
from kmeweb.outbox.services import write_device_sync
from kmeweb.profiles import counts as kept_counts
from kmeweb.profiles.models import Profile
from kmeweb.profiles.services import DEFAULT_PROFILE_NAME, generate_token

_seq = itertools.count(1)
_imei_seq = itertools.count(10_000_000)

KME_CONFIG: dict[str, Any] = {
    "agent": {
        "server_url": "https://mdm.example.com",
        "skip_setup_wizard": True,
        "allow_user_cancel": False,
    },
    "kme": {
        "supported_mdm": "Other",
        "mdm_apk_url": "https://mdm.example.com/agent.apk",
        "mdm_server_uri": "https://mdm.example.com",
        "company_name": "Example Corp",
        "do_enabled": True,
        "ae_enabled": False,
    },
    "system_extras": {},
    "custom_keys": [],
}


def next_imei() -> str:
    """A fresh IMEI with a valid Luhn check digit."""
    body = f"35{next(_imei_seq):012d}"
    return body + str(luhn_check_digit(body))


def make_profile(session: Session, waiting_devices: int = 0, **over: Any) -> Profile:
    """A committed "kme" profile (synced, valid config, token expiring in 30 days), with
    `waiting_devices` devices that have not registered yet (they still need its token)."""
    n = next(_seq)
    kind = over.get("kind", "kme")
    values: dict[str, Any] = {
        "name": f"Profile {n}",
        "description": "",
        "kind": kind,
        "token": generate_token(session) if kind != "kme_default" else None,
        "config": copy.deepcopy(KME_CONFIG) if kind == "kme" else {},
        "sync_state": "synced",
        "kme_profile_id": f"kp-{n}" if kind == "kme" else None,
    }
    if kind == "kme_default":
        values["name"] = DEFAULT_PROFILE_NAME
    values.update(over)
    profile = Profile(**values)
    session.add(profile)
    session.commit()
    for _ in range(waiting_devices):
        make_device(session, profile)
    return profile


def make_default_profile(session: Session) -> Profile:
    return make_profile(session, kind="kme_default")


def make_end_user(session: Session, **over: Any) -> EndUser:
    n = next(_seq)
    values = {"username": f"user{n}@example.com", "email": f"user{n}@example.com"}
    values.update(over)
    user = EndUser(**values)
    session.add(user)
    session.commit()
    return user


def make_reseller(session: Session, **over: Any) -> Reseller:
    n = next(_seq)
    values = {"kme_reseller_id": f"R-{n}", "name": f"Reseller {n}"}
    values.update(over)
    reseller = Reseller(**values)
    session.add(reseller)
    session.commit()
    return reseller


def make_upload(session: Session, pending: int = 0, **over: Any) -> Upload:
    """A committed upload, with `pending` devices waiting for approval."""
    n = next(_seq)
    if "reseller_id" not in over:
        over["reseller_id"] = make_reseller(session).id
    values = {
        "kme_upload_id": f"U-{n}",
        "order_number": f"PO-{n}",
        "device_count": pending,
        "status": "pending",
    }
    values.update(over)
    upload = Upload(**values)
    session.add(upload)
    session.commit()
    if pending:
        bulk_devices(session, pending, None, approval="pending", upload_id=upload.id)
    return upload


def make_device(session: Session, profile: Profile | None = None, **over: Any) -> Device:
    """A committed device: approved in `profile` (or pending without one), synced."""
    values: dict[str, Any] = {
        "imei": next_imei(),
        "model": "SM-G991B",
        "approval": "approved" if profile is not None else "pending",
        "profile_id": profile.id if profile is not None else None,
        "attributes": {},
    }
    values.update(over)
    device = Device(**values)
    session.add(device)
    session.flush()
    _recount(session, device.profile_id)
    session.commit()
    return device


def _recount(session: Session, profile_id: int | None) -> None:
    """Keep the profile's kept device counts right for devices a test writes directly."""
    if profile_id is not None:
        kept_counts.recount(session, [profile_id])


def bulk_devices(session: Session, n: int, profile: Profile | None, **values: Any) -> list[int]:
    """Insert `n` devices with valid IMEIs in one executemany and commit; returns their ids.

    `values` apply to every row (approval defaults to approved when a profile is given).
    """
    before = session.scalar(select(func.max(Device.id))) or 0
    base = {
        "model": "SM-A546B",
        "approval": "approved" if profile is not None else "pending",
        "profile_id": profile.id if profile is not None else None,
        "version": 1,
        "attributes": {},
    }
    base.update(values)
    sync = {k: base.pop(k) for k in SYNC_FIELDS if k in base}
    rows = [{**base, "imei": next_imei()} for _ in range(n)]
    session.execute(insert(Device), rows)
    _recount(session, base["profile_id"])
    ids = list(session.scalars(select(Device.id).where(Device.id > before).order_by(Device.id)))
    if sync:  # a device's sync bookkeeping is in its device_sync row
        session.execute(insert(DeviceSync), [{"device_id": i, **sync} for i in ids])
    session.commit()
    return ids


def set_device_sync(session: Session, device_ids: list[int], **values: Any) -> None:
    """Set `device_sync` columns (SYNC_FIELDS) of the devices, as a push or a pull would have
    left them (not committed)."""
    write_device_sync(session, Device.id.in_(device_ids), **values)


#: The columns of `device_sync` a test may set as if they were the device's own.
SYNC_FIELDS = tuple(c.name for c in DeviceSync.__table__.c if c.name != "device_id")


def count_rows(session: Session, model: type, *where: Any) -> int:
    """How many rows of `model` match `where` (a fresh SQL count)."""
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def admin(make_admin):
    """A committed admin account acting in service calls."""
    return make_admin("actor@example.com")
