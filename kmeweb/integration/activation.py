"""Knox Integration activation: activate, deactivate, activate from the form with a
connection test, and Sync now.

Functions take the session and the acting admin, flush but never commit, and raise
kmeweb.errors DomainError subclasses. The pull runs as a job (kmeweb.sync.jobs), enqueued after
the caller's commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kmeweb.audit import services as audit
from kmeweb.errors import Conflict, ValidationError
from kmeweb.extensions import utcnow
from kmeweb.integration.connection import ConnectionTest, connection_config
from kmeweb.integration.models import Integration, get_integration
from kmeweb.integration.settings import save_settings
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.profiles.services import ensure_default_profile
from kmeweb.sync.jobs import running_pull, start_pull


def _require_integration(session: Session) -> Integration:
    integration = get_integration(session)
    if integration is None:
        raise Conflict("Save the Knox Integration settings first.")
    return integration


def activate_integration(session: Session, actor: Any) -> Integration:
    """Mark the integration active and make sure the Samsung KME Default Profile exists.

    Does not call Knox: the caller (or its job) tests the connection and starts the pull.
    Records audit "integration.activate". Flushes.
    Raises Conflict when no settings were saved or the credentials are incomplete.
    """
    integration = _require_integration(session)
    if integration.secret_enc is None:
        raise Conflict("Enter the Knox API credentials before activating.")
    existed = session.scalar(
        select(Profile.id).where(Profile.kind == ProfileKind.KME_DEFAULT).limit(1)
    )
    default = ensure_default_profile(session)
    if not integration.active:
        integration.activated_at = utcnow()
    integration.active = True
    session.flush()
    audit.record(
        session,
        actor,
        "integration.activate",
        "integration",
        integration.id,
        {"default_profile_id": default.id, "default_profile_created": existed is None},
    )
    return integration


def deactivate_integration(session: Session, actor: Any) -> Integration:
    """Stop syncing; settings, profiles and devices stay. Records audit
    "integration.deactivate". Flushes. Raises Conflict when there is no integration."""
    integration = _require_integration(session)
    integration.active = False
    integration.activated_at = None
    session.flush()
    audit.record(session, actor, "integration.deactivate", "integration", integration.id, {})
    return integration


def activate_with_test(
    session: Session,
    data: Mapping[str, Any],
    test: ConnectionTest,
    actor: Any,
) -> Operation:
    """Activate from the Settings form: check the values, test the connection with them, and
    only if KME answers save them, activate (creating the Samsung KME Default Profile once) and
    start the first pull.

    `test(config)` returns an object with `ok` and `message` (kmeweb.integration.connection);
    it is called before anything is written, so a failed test leaves the database as it was.
    Records the audits of save_settings, activate_integration and the pull. Flushes; the pull
    is enqueued after the commit. Raises ValidationError (a field, or field None with the
    connection's reason).
    """
    config = connection_config(session, data)
    result = test(config)
    if not result.ok:
        raise ValidationError(f"Not activated: {result.message}")
    save_settings(session, data, actor)
    activate_integration(session, actor)
    operation, _started = sync_now(session, actor)
    return operation


def sync_now(session: Session, actor: Any) -> tuple[Operation, bool]:
    """Sync now: start a pull, or find the one already queued or running.

    Returns (operation, started). Flushes; the job is enqueued after the commit.
    Raises Conflict while the integration is not active.
    """
    integration = get_integration(session)
    if integration is None or not integration.active:
        raise Conflict("Activate the Knox integration before syncing.")
    running = running_pull(session)
    if running is not None:
        return running, False
    return start_pull(session, actor), True
