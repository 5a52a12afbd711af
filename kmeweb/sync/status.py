"""Sync status per profile and for the integration, from grouped queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kmeweb.devices.models import Device, DeviceSync
from kmeweb.installation import installation_id
from kmeweb.integration.models import get_integration
from kmeweb.outbox.models import UNFINISHED, Change, ChangeStatus, SyncState
from kmeweb.profiles.models import Profile
from kmeweb.sync.schedule import last_run_key
from kmeweb.text import count


@dataclass
class SyncStatus:
    state: str  # synced | pending | syncing | error
    message: str | None = None
    at: datetime | None = None
    pending_devices: int = 0
    error_devices: int = 0


def profile_statuses(
    session: Session, profile_ids: list[int] | None = None
) -> dict[int, SyncStatus]:
    """Status of each profile: error (profile or devices), syncing (a change running),
    pending (changes or devices waiting), else synced with the last sync time."""
    stmt = select(
        Profile.id,
        Profile.sync_state,
        Profile.sync_error,
        Profile.sync_error_at,
        Profile.last_synced_at,
    )
    if profile_ids is not None:
        stmt = stmt.where(Profile.id.in_(profile_ids))
    profiles = session.execute(stmt).all()
    device_counts: dict[tuple[int, str], int] = {}
    # `!= 'synced'` matches the partial index ix_device_sync_unsynced, so both device queries
    # read only the (few) unsynced devices, never the millions that are synced. No profile
    # filter in SQL: it would make the planner walk every device of the page's profiles instead.
    unsynced = DeviceSync.sync_state != SyncState.SYNCED
    dstmt = (
        select(Device.profile_id, DeviceSync.sync_state, func.count())
        .select_from(DeviceSync)
        .join(Device, Device.id == DeviceSync.device_id)
        .where(unsynced)
        .group_by(Device.profile_id, DeviceSync.sync_state)
    )
    for pid, state, n in session.execute(dstmt):
        device_counts[(pid, state)] = n
    running = {
        pid
        for (pid,) in session.execute(
            select(Change.profile_id).where(Change.status == ChangeStatus.RUNNING).distinct()
        )
    }
    first_device_error = dict(
        session.execute(
            select(Device.profile_id, func.min(DeviceSync.sync_error))
            .select_from(DeviceSync)
            .join(Device, Device.id == DeviceSync.device_id)
            .where(unsynced, DeviceSync.sync_state == SyncState.ERROR)
            .group_by(Device.profile_id)
        ).all()
    )
    out: dict[int, SyncStatus] = {}
    for p in profiles:
        pending = device_counts.get((p.id, SyncState.PENDING), 0)
        errors = device_counts.get((p.id, SyncState.ERROR), 0)
        if p.sync_state == SyncState.ERROR:
            status = SyncStatus(SyncState.ERROR, p.sync_error, p.sync_error_at)
        elif errors:
            status = SyncStatus(
                SyncState.ERROR, f"{count(errors, 'device')}: {first_device_error.get(p.id)}"
            )
        elif p.id in running:
            status = SyncStatus(SyncState.SYNCING)
        elif p.sync_state == SyncState.PENDING or pending:
            status = SyncStatus(SyncState.PENDING)
        else:
            status = SyncStatus(SyncState.SYNCED, at=p.last_synced_at)
        status.pending_devices, status.error_devices = pending, errors
        out[p.id] = status
    return out


def integration_status(session: Session, redis: Any = None) -> dict[str, Any]:
    """What operators and the integration page show: last pull/push, next run, backlog."""
    integration = get_integration(session)
    counts = dict(
        session.execute(
            select(Change.status, func.count())
            .where(Change.status.in_((*UNFINISHED, ChangeStatus.FAILED)))
            .group_by(Change.status)
        ).all()
    )
    status: dict[str, Any] = {
        "configured": integration is not None,
        "active": bool(integration and integration.active),
        "last_pull_at": integration.last_pull_at if integration else None,
        "last_full_pull_at": integration.last_full_pull_at if integration else None,
        "last_push_at": integration.last_push_at if integration else None,
        "last_error": integration.last_error if integration else None,
        "last_error_at": integration.last_error_at if integration else None,
        "pending_changes": sum(counts.get(status, 0) for status in UNFINISHED),
        "failed_changes": counts.get(ChangeStatus.FAILED, 0),
        "next_pull_at": None,
    }
    if integration and integration.active:
        last = integration.last_pull_at
        if redis is not None:
            raw = redis.hget(last_run_key(installation_id(session.get_bind())), "pull")
            if raw is not None:
                last = datetime.fromtimestamp(float(raw), UTC)
        if last is not None:
            status["next_pull_at"] = last + timedelta(seconds=integration.sync_interval_s)
    return status
