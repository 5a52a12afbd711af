"""Integration: the Knox integration's status, Test connection and Sync now, as on the Knox
Integration page. No answer ever carries a secret (client secret, keys.json, client id or
identifier, keys)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kmeweb.api.operations import OperationOut
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Out
from kmeweb.apitokens.models import Scope
from kmeweb.extensions import db
from kmeweb.integration import activation
from kmeweb.integration.connection import check_connection, connection_config
from kmeweb.integration.models import AuthMode
from kmeweb.integration.status import integration_overview

TAG = "integration"


class IntegrationOut(Out):
    """The Status panel and the saved settings a viewer may read; never a secret."""

    configured: bool = Field(description="Whether the settings were ever saved")
    active: bool = Field(description="Whether kmeweb syncs with KME")
    name: str | None
    description: str | None
    auth_mode: AuthMode | None
    region: str | None = Field(description="us, eu, global, or custom (see base_url)")
    base_url: str | None = Field(description="The Knox API URL")
    customer_id: str | None
    activated_at: datetime | None = Field(description="Active since (None while inactive)")
    sync_interval_s: int | None = Field(description="Seconds between scheduled pulls")
    last_pull_at: datetime | None
    last_full_pull_at: datetime | None
    last_push_at: datetime | None
    next_pull_at: datetime | None = Field(description="The next scheduled pull, when active")
    last_error: str | None
    last_error_at: datetime | None
    pending_changes: int = Field(description="Changes still to be sent to KME")
    failed_changes: int = Field(description="Changes KME refused, to retry or look at")
    sync_operation: OperationOut | None = Field(description="The pull queued or running now")


class ConnectionOut(Out):
    ok: bool = Field(description="Whether KME answered with the saved settings")
    message: str = Field(description="What happened, in the words the page shows")
    device_count: int | None = Field(description="Devices the tenant holds, when connected")


@api.get("/integration", scope=Scope.INTEGRATION_READ, tag=TAG, answers={200: IntegrationOut})
def integration_status() -> IntegrationOut:
    """The Knox integration's status, as the Knox Integration page shows it."""
    overview = integration_overview(db.session)
    operation = overview.pop("sync_operation")
    return IntegrationOut.model_validate(
        {**overview, "sync_operation": OperationOut.of(operation) if operation else None}
    )


@api.post(
    "/integration/test-connection",
    scope=Scope.INTEGRATION_WRITE,
    tag=TAG,
    answers={200: ConnectionOut, 409: None},
)
def test_connection() -> ConnectionOut:
    """Test connection with the saved settings: one KME call with a short timeout; saves
    nothing. A refused connection is an answer (`ok` false with the reason), not an error."""
    return ConnectionOut.model_validate(check_connection(connection_config(db.session)))


@api.post(
    "/integration/sync",
    scope=Scope.INTEGRATION_WRITE,
    tag=TAG,
    answers={202: OperationOut, 409: None},
)
def sync_now():
    """Sync now: start a pull from KME, or answer the one already queued or running."""
    operation, _started = activation.sync_now(db.session, caller())
    db.session.commit()
    out = OperationOut.of(operation)
    return out, 202, {"Location": out.url}
