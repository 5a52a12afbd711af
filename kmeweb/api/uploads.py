"""Uploads and resellers: reseller uploads pulled from KME, their devices waiting for approval,
Approve All Devices, and resellers with the routing rules that name them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kmeweb.api.operations import OperationOut
from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Accepted, Out
from kmeweb.apitokens.models import Scope
from kmeweb.devices.models import Device
from kmeweb.extensions import db
from kmeweb.integration import approvals, resellers, uploads
from kmeweb.integration.models import Reseller, Upload, UploadStatus
from kmeweb.rules.services import rules_by_reseller, rules_naming_reseller

TAG = "uploads"


class UploadOut(Out):
    """A reseller upload, as a row of the Uploads tab."""

    id: int
    kme_upload_id: str = Field(description="The upload's id in KME")
    reseller_id: int | None
    reseller: str | None = Field(description="The reseller's name")
    order_number: str | None
    uploaded_at: datetime | None
    devices: int = Field(description="Devices in the upload")
    pending: int = Field(description="Devices still waiting for approval")
    status: UploadStatus

    @classmethod
    def of(cls, upload: Upload, reseller: str | None, pending: int) -> UploadOut:
        return cls(
            id=upload.id,
            kme_upload_id=upload.kme_upload_id,
            reseller_id=upload.reseller_id,
            reseller=reseller,
            order_number=upload.order_number,
            uploaded_at=upload.uploaded_at,
            devices=upload.device_count,
            pending=pending,
            status=upload.status,
        )


class UploadDetailOut(UploadOut):
    """One upload, as its View page shows it."""

    approval_profile: str = Field(description="The profile its devices land in when approved")
    approval_operation: OperationOut | None = Field(
        description="Its latest Approve All Devices operation, running or finished"
    )


class UploadPage(BaseModel):
    items: list[UploadOut]
    next_cursor: str | None


class UploadQuery(PageQuery):
    q: str | None = Field(
        None, max_length=100, description="Upload id, order number, reseller name or Knox id"
    )


class PendingDeviceOut(Out):
    """A device of an upload that waits for approval."""

    id: int
    imei: str | None
    serial: str | None
    model: str | None
    kme_device_id: str | None


class PendingDevicePage(BaseModel):
    items: list[PendingDeviceOut]
    next_cursor: str | None


class PendingDeviceQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="IMEI, serial or model contains")


class ApproveIn(BaseModel):
    expected_pending: int | None = Field(
        None,
        ge=0,
        description="The pending count you saw: if the upload now has another, nothing is "
        "approved and the answer is 409",
    )


class ResellerOut(Out):
    id: int
    kme_reseller_id: str = Field(description="The reseller's id in KME")
    name: str
    rule_ids: list[int] = Field(
        description="The routing rules with a condition on this reseller, in order "
        "(/api/v1/rules): they say what happens to its uploads"
    )

    @classmethod
    def of(cls, reseller: Reseller, rules: list[Any]) -> ResellerOut:
        return cls(
            id=reseller.id,
            kme_reseller_id=reseller.kme_reseller_id,
            name=reseller.name,
            rule_ids=[r.id for r in rules],
        )


class ResellerPage(BaseModel):
    items: list[ResellerOut]
    next_cursor: str | None


class ResellerQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="Name or Knox reseller id contains")


@api.get(
    "/uploads", scope=Scope.UPLOADS_READ, tag=TAG, query=UploadQuery, answers={200: UploadPage}
)
def list_uploads(query: UploadQuery) -> UploadPage:
    """Reseller uploads, newest first (by id), with their pending counts."""
    stmt = uploads.upload_rows(query.q)
    rows, cursor = keyset(db.session, stmt, Upload.id, query, descending=True)
    pending = uploads.pending_counts(db.session, [upload_id for upload_id, _u, _r in rows])
    items = [UploadOut.of(u, reseller, pending[upload_id]) for upload_id, u, reseller in rows]
    return UploadPage(items=items, next_cursor=cursor)


@api.get(
    "/uploads/<int:upload_id>",
    scope=Scope.UPLOADS_READ,
    tag=TAG,
    answers={200: UploadDetailOut, 404: None},
)
def get_upload(upload_id: int) -> UploadDetailOut:
    """One upload with its pending count and where its devices land when approved."""
    facts = approvals.upload_facts(db.session, upload_id)
    operation = approvals.approval_operation(db.session, upload_id)
    reseller = facts["reseller"]
    return UploadDetailOut(
        **UploadOut.of(
            facts["upload"], reseller and reseller.name, facts["pending_count"]
        ).model_dump(),
        approval_profile=facts["target_profile"],
        approval_operation=OperationOut.of(operation) if operation else None,
    )


@api.get(
    "/uploads/<int:upload_id>/devices",
    scope=Scope.UPLOADS_READ,
    tag=TAG,
    query=PendingDeviceQuery,
    answers={200: PendingDevicePage, 404: None},
)
def list_upload_devices(upload_id: int, query: PendingDeviceQuery) -> PendingDevicePage:
    """The devices of an upload that wait for approval, by id."""
    uploads.get_upload_or_404(db.session, upload_id)
    stmt = uploads.upload_devices_query(upload_id, query.q)
    rows, cursor = keyset(db.session, stmt, Device.id, query)
    items = [PendingDeviceOut.model_validate(d) for d in rows]
    return PendingDevicePage(items=items, next_cursor=cursor)


@api.post(
    "/uploads/<int:upload_id>/approve",
    scope=Scope.UPLOADS_WRITE,
    tag=TAG,
    body=ApproveIn,
    answers={202: Accepted, 404: None, 409: None},
)
def approve_upload(upload_id: int, json: ApproveIn):
    """Approve All Devices: approve every pending device of the upload, in KME and here; they
    land where the routing rules say (the first rule that matches each device). 409 while an
    approval of it runs, when nothing is pending, or when `expected_pending` differs."""
    operation = approvals.approve_upload(db.session, upload_id, caller(), json.expected_pending)
    db.session.commit()
    return Accepted.answer(operation.id, operation.total)


@api.get(
    "/resellers",
    scope=Scope.UPLOADS_READ,
    tag=TAG,
    query=ResellerQuery,
    answers={200: ResellerPage},
)
def list_resellers(query: ResellerQuery) -> ResellerPage:
    """Resellers with the routing rules that name them, by id."""
    rows, cursor = keyset(db.session, resellers.reseller_rows(query.q), Reseller.id, query)
    rules = rules_by_reseller(db.session, [reseller.id for _id, reseller in rows])
    items = [ResellerOut.of(reseller, rules[reseller.id]) for _id, reseller in rows]
    return ResellerPage(items=items, next_cursor=cursor)


@api.get(
    "/resellers/<int:reseller_id>",
    scope=Scope.UPLOADS_READ,
    tag=TAG,
    answers={200: ResellerOut, 404: None},
)
def get_reseller(reseller_id: int) -> ResellerOut:
    """One reseller with the routing rules that name it."""
    reseller = resellers.get_reseller_or_404(db.session, reseller_id)
    return ResellerOut.of(reseller, rules_naming_reseller(db.session, reseller.id))
