"""The Knox integration's status as its Settings tab shows it: the saved settings a viewer may
read, the sync health and the pull running now. Never a secret: no client secret, no keys.json,
no client id or identifier (a legacy one is a credential), no encryption key.

Reads only.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from sqlalchemy.orm import Session

from kmeweb.integration.models import get_integration
from kmeweb.integration.settings import region_of
from kmeweb.operations.queue import redis_connection
from kmeweb.sync.jobs import running_pull
from kmeweb.sync.status import integration_status


def status_redis() -> Redis | None:
    """Redis for the next scheduled pull, or None when it does not answer: the status is
    still shown without the schedule rather than refused."""
    try:
        redis = redis_connection()
        redis.ping()
    except Exception:  # noqa: BLE001 - status without the schedule rather than an error
        return None
    return redis


def integration_overview(session: Session) -> dict[str, Any]:
    """The Status panel and the viewer's summary of the settings, in one mapping:
    configured, active, name, description, auth_mode, region, base_url, customer_id,
    activated_at, sync_interval_s, the sync times and counts of
    kmeweb.sync.status.integration_status, and `sync_operation` (the pull queued or running,
    else None)."""
    integration = get_integration(session)
    saved = {
        "name": integration.name if integration else None,
        "description": integration.description if integration else None,
        "auth_mode": integration.auth_mode if integration else None,
        "region": region_of(integration.base_url) if integration else None,
        "base_url": integration.base_url if integration else None,
        "customer_id": integration.customer_id if integration else None,
        "activated_at": integration.activated_at if integration and integration.active else None,
        "sync_interval_s": integration.sync_interval_s if integration else None,
    }
    return {
        **integration_status(session, status_redis()),
        **saved,
        "sync_operation": running_pull(session),
    }
