"""Operations: the background work an action started, its progress and its per-device
results; retry a failed one."""

from __future__ import annotations

from datetime import datetime

from flask import url_for
from pydantic import BaseModel, Field

from kmeweb.api.paging import PageQuery, decode, encode, invalid_cursor, keyset
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Out
from kmeweb.apitokens.models import Scope
from kmeweb.extensions import db
from kmeweb.operations import services
from kmeweb.operations.models import Operation, OperationStatus
from kmeweb.outbox import services as outbox
from kmeweb.outbox.models import DeviceResult

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
    out = OperationOut.of(operation)
    return out, 202, {"Location": out.url}


class OperationResultOut(Out):
    """What an operation did to one device."""

    device_id: int | None = Field(description="None for a deletion: the device is gone")
    identifier: str | None = Field(
        description="For a deletion: what KME knows the device by (KME id, IMEI or serial)"
    )
    imei: str | None
    serial: str | None
    result: DeviceResult
    error: str | None = Field(description="Why it failed: Samsung's code and message")


class OperationResultPage(BaseModel):
    items: list[OperationResultOut]
    next_cursor: str | None


def _position(cursor: str | None) -> tuple[int, int] | None:
    """Where a results page starts: the (change, index) a `next_cursor` names."""
    if cursor is None:
        return None
    after = decode(cursor)
    if not (isinstance(after, list) and len(after) == 2 and all(type(n) is int for n in after)):
        raise invalid_cursor()
    return after[0], after[1]


@api.get(
    "/operations/<int:operation_id>/results",
    scope=Scope.OPERATIONS_READ,
    tag=TAG,
    query=PageQuery,
    answers={200: OperationResultPage, 404: None},
)
def operation_results(operation_id: int, query: PageQuery) -> OperationResultPage:
    """The operation's result per device: succeeded, failed (with Samsung's code and
    message) or pending, in the order the devices were sent."""
    rows, after = outbox.device_results(
        db.session, operation_id, _position(query.cursor), query.limit
    )
    return OperationResultPage(
        items=[OperationResultOut.model_validate(row) for row in rows],
        next_cursor=encode(list(after)) if after else None,
    )
