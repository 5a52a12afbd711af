"""Audit: the append-only log of who changed what, queried by time, actor, action and object,
paged, and exported as NDJSON."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import stream_with_context
from pydantic import BaseModel, ConfigDict, Field

from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api
from kmeweb.api.schemas import Out
from kmeweb.apitokens.models import Scope
from kmeweb.audit import services
from kmeweb.audit.models import AuditEvent
from kmeweb.extensions import db

TAG = "audit"
NDJSON = "application/x-ndjson"


class AuditOut(Out):
    """One audit event."""

    id: int
    at: datetime
    actor: str = Field(description='Who: an email, "owner (API token name)", or "sync", ...')
    action: str = Field(description="What, e.g. device.move, profile.update")
    target_type: str | None = Field(description="The kind of object, e.g. device, profile")
    target_id: str | None
    details: dict[str, Any] = Field(description="The change; secrets are never kept")
    ip: str | None


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: str | None


class AuditFilter(BaseModel):
    """The filters of the audit log (all optional, combined with AND)."""

    model_config = ConfigDict(populate_by_name=True)

    at_from: datetime | None = Field(
        None, alias="from", description="Events at or after this time (ISO 8601; UTC if no zone)"
    )
    at_to: datetime | None = Field(
        None, alias="to", description="Events before this time (ISO 8601; UTC if no zone)"
    )
    actor: str | None = Field(None, max_length=254, description="The actor contains this")
    action: str | None = Field(None, max_length=64, description="Exactly this action")
    target_type: str | None = Field(None, max_length=32, description="The object's kind")
    target_id: str | None = Field(None, max_length=64, description="The object's id")

    def select(self) -> Any:
        return services.query_events(
            (self.actor or "").strip() or None,
            self.action or None,
            at_from=self.at_from,
            at_to=self.at_to,
            target_type=self.target_type or None,
            target_id=self.target_id or None,
        )


class AuditQuery(AuditFilter, PageQuery):
    pass


@api.get("/audit", scope=Scope.AUDIT_READ, tag=TAG, query=AuditQuery, answers={200: AuditPage})
def list_audit(query: AuditQuery) -> AuditPage:
    """Audit events, newest first (by id), filtered by time, actor, action and object."""
    rows, cursor = keyset(db.session, query.select(), AuditEvent.id, query, descending=True)
    return AuditPage(items=[AuditOut.model_validate(e) for e in rows], next_cursor=cursor)


def _ndjson(events: Iterator[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield AuditOut.model_validate(event).model_dump_json() + "\n"


@api.get(
    "/audit/export",
    scope=Scope.AUDIT_READ,
    tag=TAG,
    query=AuditFilter,
    answers={200: None},
    raw=True,
)
def export_audit(query: AuditFilter):
    """Every event matching the filters as NDJSON (application/x-ndjson): one AuditOut object
    per line, newest first, streamed as it is read."""
    lines = _ndjson(services.iter_events(db.session, query.select()))
    headers = {"Content-Type": NDJSON, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return stream_with_context(lines), 200, headers
