"""Operations: the background work an action started, its progress and its per-device
results; retry a failed one."""

from __future__ import annotations

from datetime import datetime

from flask import url_for
from pydantic import BaseModel, Field

from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Out
from kmeweb.apitokens.models import Scope
from kmeweb.extensions import db
from kmeweb.operations import services
from kmeweb.operations.models import Operation, OperationStatus

TAG = "operations"


class OperationOut(Out):
    id: int
    kind: str = Field(description="What the operation does, e.g. device.move, pull")
    label: str
    status: OperationStatus
    total: int = Field(description="How many items (devices, changes) it covers")
    done: int = Field(description="How many of them are done")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str

    @classmethod
    def of(cls, operation: Operation) -> OperationOut:
        return cls.model_validate(
            {
                **{k: getattr(operation, k) for k in cls.model_fields if k != "url"},
                "url": url_for("api.get_operation", operation_id=operation.id),
            }
        )


class OperationPage(BaseModel):
    items: list[OperationOut]
    next_cursor: str | None


class OperationQuery(PageQuery):
    status: OperationStatus | None = None
    kind: str | None = Field(None, max_length=32)


@api.get(
    "/operations",
    scope=Scope.OPERATIONS_READ,
    tag=TAG,
    query=OperationQuery,
    answers={200: OperationPage},
)
def list_operations(query: OperationQuery) -> OperationPage:
    """Operations, newest first."""
    stmt = services.query_operations(query.status, query.kind)
    rows, cursor = keyset(db.session, stmt, Operation.id, query, descending=True)
    return OperationPage(items=[OperationOut.of(op) for op in rows], next_cursor=cursor)


@api.get(
    "/operations/<int:operation_id>",
    scope=Scope.OPERATIONS_READ,
    tag=TAG,
    answers={200: OperationOut, 404: None},
)
def get_operation(operation_id: int) -> OperationOut:
    """One operation with its progress."""
    return OperationOut.of(services.get_operation(db.session, operation_id))


@api.post(
    "/operations/<int:operation_id>/retry",
    scope=Scope.OPERATIONS_WRITE,
    tag=TAG,
    answers={202: OperationOut, 404: None, 409: None},
)
def retry_operation(operation_id: int):
    """Queue a failed operation's failed changes again."""
    operation = services.retry_operation(db.session, operation_id, caller())
    db.session.commit()
    return OperationOut.of(operation), 202, {"Location": OperationOut.of(operation).url}
