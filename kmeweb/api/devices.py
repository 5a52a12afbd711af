"""Devices: search across profiles, one device, the bulk actions of a profile's page (Move,
Unassign, Delete, attributes, user, Remove) and Import devices into a Self-Maintained profile
(preview, then confirm), on the services the pages use (kmeweb.devices.services and
kmeweb.devices.importer).

A bulk action selects `device_ids` (explicit ids, from any profile where the action allows it)
or a profile's `filter` (the device table's search and filters, "all N matching") with the
`expected_count` the caller means to act on: when the filter matches another number of
devices now, the answer is 409 `count_mismatch` and nothing changes. `?dry_run=true` runs every
check of the action, counts the devices and writes nothing.
"""

from __future__ import annotations

import io
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from flask import url_for
from pydantic import BaseModel, Field, field_validator, model_validator

from kmeweb.api.paging import PageQuery, keyset
from kmeweb.api.routing import api, caller
from kmeweb.api.schemas import Accepted, Counted, Out
from kmeweb.apitokens.models import Scope
from kmeweb.csvimport import ImportRejected
from kmeweb.devices import history, importer
from kmeweb.devices import services as devices
from kmeweb.devices.models import Approval, Device, Registration
from kmeweb.devices.selection import SYNC_FILTER_STATES, DeviceFilter, DeviceSelection
from kmeweb.errors import ApiProblem, NotFound
from kmeweb.extensions import db
from kmeweb.ids import MAX_DB_INT
from kmeweb.operations.models import Operation
from kmeweb.outbox.models import SyncState

TAG = "devices"
IDS_MAX = 100_000  # explicit ids per request; larger selections go by filter
ERRORS_MAX = 1000  # row errors an import answer lists (error_count says how many there are)

DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
#: The sync states the device table filters by.
DeviceSync = StrEnum("DeviceSync", {state.name: state.value for state in SYNC_FILTER_STATES})


def _blank_is_any(value: Any) -> Any:
    """The pages send "" for "any"; so may a script."""
    return None if value == "" else value


# -- answers ---------------------------------------------------------------------------------


class DeviceOut(Out):
    """A device as an admin sees it on its profile's page, and where it came from."""

    id: int
    imei: str | None = Field(description="The IMEI, or the MEID of a CDMA device")
    serial: str | None
    model: str | None
    profile_id: int | None = Field(description="None while the device waits for approval")
    profile_name: str | None
    approval: Approval = Field(description="Whether the customer approved its upload")
    end_user_id: int | None
    end_user: str | None = Field(description="The end user's username")
    attributes: dict[str, Any] = Field(description="Custom attributes (kmeweb only)")
    registered_at: datetime | None = Field(description="First enrollment; None: not registered")
    agent_version: str | None
    kme_device_id: str | None = Field(description="Samsung KME's id of the device")
    kme_status: str | None = Field(description="The device's status in Samsung KME")
    sync_state: SyncState = Field(description="Whether KME has every change of the device")
    sync_error: str | None = Field(description="Why the last change failed in KME")
    upload_id: int | None = Field(description="The reseller upload that brought it")
    reseller_id: int | None
    reseller_name: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    url: str

    @field_validator("attributes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_cursor: str | None


def _devices(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of kmeweb.devices.services.device_rows with their `url` (GET /devices/<id> sits
    under GET /devices: one url_for for the page, not one per device)."""
    base = url_for("api.list_devices")
    return [{**row, "url": f"{base}/{row['id']}"} for row in rows]


class DeviceImportRowError(BaseModel):
    row: int = Field(description="The spreadsheet row (1 is the header)")
    column: str
    value: str = Field(description="The cell as read; a password shows as (hidden)")
    reason: str


class DeviceImportCounts(BaseModel):
    new: int = Field(description="Devices kmeweb does not know yet")
    moved: int = Field(description="Devices that move here from another Self-Maintained profile")
    updated: int = Field(description="Devices of this profile whose user or password change")
    unchanged: int


class DeviceImportPreview(BaseModel):
    """What Confirm import would do with the file; nothing is written yet."""

    preview_id: str = Field(description="Names the preview for confirm (kept for an hour)")
    profile_id: int
    filename: str
    rows: int = Field(description="Data rows of the file")
    counts: DeviceImportCounts
    error_count: int
    error_rows: int = Field(description="Rows with at least one error")
    errors: list[DeviceImportRowError] = Field(
        description=f"Every error by row, column and value (the first {ERRORS_MAX:,})"
    )
    can_confirm: bool = Field(description="No errors and at least one row")
    confirm_url: str | None

    @classmethod
    def of(cls, preview: importer.Preview) -> DeviceImportPreview:
        confirm = url_for(
            "api.confirm_device_import", profile_id=preview.profile_id, preview_id=preview.token
        )
        return cls(
            preview_id=preview.token,
            profile_id=preview.profile_id,
            filename=preview.filename,
            rows=preview.rows,
            counts=DeviceImportCounts(**preview.counts),
            error_count=preview.error_count,
            error_rows=preview.error_rows,
            errors=[
                DeviceImportRowError(row=e.row, column=e.column, value=e.value, reason=e.reason)
                for e in preview.errors[:ERRORS_MAX]
            ],
            can_confirm=preview.can_import,
            confirm_url=confirm if preview.can_import else None,
        )


# -- requests --------------------------------------------------------------------------------


class DeviceQuery(PageQuery):
    q: str | None = Field(
        None,
        max_length=100,
        description="IMEI, serial, model or username, as the profile page searches (a part of "
        "any; 6 or more digits: the start of the IMEI)",
    )
    imei: str | None = Field(None, max_length=16, description="The exact IMEI or MEID")
    serial: str | None = Field(None, max_length=16, description="The exact serial number")
    model: str | None = Field(None, max_length=64, description="The exact model (any case)")
    user: str | None = Field(None, max_length=254, description="The user's username (any case)")
    profile_id: DbId | None = None
    registration: Registration | None = None
    sync: DeviceSync | None = None
    attribute: str | None = Field(
        None,
        max_length=600,
        pattern=r"^[^=]+=",
        description="`key=value`: the custom attribute `key` has this value (as text)",
    )

    blank_is_any = field_validator("registration", "sync", mode="before")(_blank_is_any)

    def attribute_pair(self) -> tuple[str, str] | None:
        if self.attribute is None:
            return None
        key, _, value = self.attribute.partition("=")
        return key.strip(), value


class DeviceDryRun(BaseModel):
    dry_run: bool = Field(False, description="Run every check and count; write nothing")


class DeviceFilterIn(BaseModel):
    """The device table's filter of one profile: its "Select all N matching"."""

    profile_id: DbId = Field(description="The profile whose devices match")
    q: str = Field("", max_length=100, description="The table's search")
    registration: Registration | None = None
    sync: DeviceSync | None = None

    blank_is_any = field_validator("registration", "sync", mode="before")(_blank_is_any)


class DeviceSelectionIn(BaseModel):
    """`device_ids`, or `filter` with `expected_count`."""

    device_ids: list[DbId] | None = Field(
        None, min_length=1, max_length=IDS_MAX, description="Explicit devices, from any profile"
    )
    filter: DeviceFilterIn | None = None
    expected_count: int | None = Field(
        None,
        ge=0,
        le=MAX_DB_INT,
        description="How many devices the selection must name now (required with `filter`); "
        "another number is a 409 count_mismatch and nothing changes",
    )

    @model_validator(mode="after")
    def _one_selection(self) -> DeviceSelectionIn:
        if (self.device_ids is None) == (self.filter is None):
            raise ValueError("Send device_ids or filter, one of them.")
        if self.filter is not None and self.expected_count is None:
            raise ValueError("expected_count is required with filter: how many devices it names.")
        return self

    def selection(self) -> DeviceSelection:
        if self.filter is None:
            return DeviceSelection(None, ids=tuple(dict.fromkeys(self.device_ids or ())))
        f = self.filter
        flt = DeviceFilter(f.q, f.registration or "", f.sync or "")
        return DeviceSelection(f.profile_id, all_matching=True, filter=flt)


class DeviceMoveIn(DeviceSelectionIn):
    profile_id: DbId = Field(description="The Samsung KME profile the devices go to")


class DeviceAttributesIn(DeviceSelectionIn):
    changes: dict[str, str | int | float | bool | None] = Field(
        min_length=1,
        max_length=devices.ATTRIBUTES_MAX,
        description="Attribute name: the value to set, or null to remove the attribute",
    )


class DeviceUserIn(DeviceSelectionIn):
    end_user_id: DbId | None = Field(description="The end user; null clears user and password")
    password: str | None = Field(
        None,
        max_length=devices.PASSWORD_MAX_BYTES,
        description="A new enrollment password (never shown again); empty keeps the stored one",
    )


class DeviceImportIn(BaseModel):
    csv: str = Field(
        min_length=1,
        description="The CSV file as text: a header row (imei, serial, username, "
        "enrollment_password; imei or serial required) and a row per device",
    )
    filename: str | None = Field(None, max_length=200, description="Kept in the audit log")


# -- routes ----------------------------------------------------------------------------------

BULK = {200: Counted, 202: Accepted, 404: None, 409: None}


def _done(operation: Operation | None, n: int, dry_run: bool = False) -> Any:
    """The answer of an action on devices: a dry run's count (what it wrote is rolled back);
    else 202 with its operation (Location) to follow, or without one when nothing goes to
    KME (the change is already made)."""
    if dry_run:
        db.session.rollback()
        return Counted(devices=n)
    operation_id = operation.id if operation is not None else None
    db.session.commit()
    return Accepted.answer(operation_id, n)


def _refused(err: ImportRejected) -> ApiProblem:
    """An import refused as a whole: 413 for a file too large, else 422 with each row at
    fault (field `csv.rows.<row>.<column>`)."""
    errors = [{"field": "csv", "message": err.message}]
    for e in err.errors[:ERRORS_MAX]:
        field = f"csv.rows.{e.row}" + (f".{e.column}" if e.column else "")
        errors.append(
            {"field": field, "message": f"{e.reason} ({e.value})" if e.value else e.reason}
        )
    return ApiProblem(
        err.status, err.code if err.status == 413 else "invalid_csv", err.message, errors
    )


@api.get(
    "/devices", scope=Scope.DEVICES_READ, tag=TAG, query=DeviceQuery, answers={200: DevicePage}
)
def list_devices(query: DeviceQuery) -> DevicePage:
    """Search devices across profiles

    Every filter given must match. Devices come by id; `next_cursor` names the next page.
    Devices waiting for approval have no profile.
    """
    stmt = devices.search_devices(
        q=query.q,
        imei=query.imei,
        serial=query.serial,
        model=query.model,
        username=query.user,
        profile_id=query.profile_id,
        registration=query.registration,
        sync_state=query.sync,
        attribute=query.attribute_pair(),
    )
    ids, cursor = keyset(db.session, stmt, Device.id, query)
    rows = _devices(devices.device_rows(db.session, ids))
    return DevicePage.model_validate({"items": rows, "next_cursor": cursor})


@api.get(
    "/devices/<int:device_id>",
    scope=Scope.DEVICES_READ,
    tag=TAG,
    answers={200: DeviceOut, 404: None},
)
def get_device(device_id: int) -> DeviceOut:
    """One device"""
    return DeviceOut.model_validate(_devices([devices.get_device_row(db.session, device_id)])[0])


class HistoryQuery(BaseModel):
    before: str | None = Field(
        None, max_length=80, description="The `older` of the previous page: the next, older one"
    )
    limit: int = Field(50, ge=1, le=history.PAGE_MAX)


class HistoryEntryOut(BaseModel):
    at: datetime
    who: str = Field(description="The admin's email, the reseller, `device`, or kmeweb (sync)")
    what: str = Field(description="What happened, as the device page says it")
    detail: str = Field(description="From → to, Samsung's code and message, ...")
    failed: bool = Field(description="Samsung or the device's agent refused it")


class HistoryPageOut(BaseModel):
    items: list[HistoryEntryOut]
    older: str | None = Field(description="Pass as `before` for the next page; None: the last")


@api.get(
    "/devices/<int:device_id>/history",
    scope=Scope.DEVICES_READ,
    tag=TAG,
    query=HistoryQuery,
    answers={200: HistoryPageOut, 404: None},
)
def device_history(device_id: int, query: HistoryQuery) -> HistoryPageOut:
    """One device's history, newest first

    The device page's History: upload, approval, each move and edit with who did it, each push
    and Samsung's answer, changes made in the Samsung portal, enrollment attempts, deletion.
    A deleted device keeps its history.
    """
    if db.session.get(Device, device_id) is None and not history.has_history(db.session, device_id):
        raise NotFound("No such device.")
    page = history.device_history(db.session, device_id, query.before, query.limit)
    items = [
        HistoryEntryOut(at=e.at, who=e.who, what=e.what, detail=e.detail, failed=e.failed)
        for e in page.entries
    ]
    return HistoryPageOut(items=items, older=page.older)


@api.post(
    "/devices/move",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceMoveIn,
    answers=BULK,
)
def move_devices(query: DeviceDryRun, json: DeviceMoveIn):
    """Move devices to a Samsung KME profile

    Back to the Samsung KME Default Profile is Unassign. 202: the operation sends the move to
    KME; `devices` counts the devices not already in the profile. A `filter` is checked and
    counted at once and moved by the operation (queued; the devices move when it runs, taking
    what matches then); explicit `device_ids` are moved (pending) before the answer.
    """
    operation = devices.move_selection(
        db.session,
        json.selection(),
        json.profile_id,
        caller(),
        json.expected_count,
        later=not query.dry_run,
    )
    return _done(operation, operation.total, query.dry_run)


@api.post(
    "/devices/unassign",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceSelectionIn,
    answers=BULK,
)
def unassign_devices(query: DeviceDryRun, json: DeviceSelectionIn):
    """Unassign devices

    The devices go back to the Samsung KME Default Profile. 202: the operation sends it to KME.
    """
    operation = devices.unassign_selection(
        db.session, json.selection(), caller(), json.expected_count
    )
    return _done(operation, operation.total, query.dry_run)


@api.post(
    "/devices/delete",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceSelectionIn,
    answers=BULK,
)
def delete_devices(query: DeviceDryRun, json: DeviceSelectionIn):
    """Delete devices from kmeweb and KME

    Devices are deleted from the Samsung KME Default Profile only: unassign them first (a
    device elsewhere is a 409). 202: the operation deletes them in KME (`operation_id` null
    when none was in Knox).
    """
    operation, n = devices.delete_selection(
        db.session, json.selection(), caller(), json.expected_count
    )
    return _done(operation, n, query.dry_run)


@api.post(
    "/devices/remove",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceSelectionIn,
    answers=BULK,
)
def remove_devices(query: DeviceDryRun, json: DeviceSelectionIn):
    """Remove devices of Self-Maintained profiles

    They leave kmeweb; they are not in Knox, so nothing goes to KME (a device of a Knox profile
    is a 409). 202 with `operation_id` null: done.
    """
    n = devices.remove_selection(db.session, json.selection(), caller(), json.expected_count)
    return _done(None, n, query.dry_run)


@api.post(
    "/devices/attributes",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceAttributesIn,
    answers=BULK,
)
def set_device_attributes(query: DeviceDryRun, json: DeviceAttributesIn):
    """Set or remove custom attributes

    Each name of `changes` is set to its value on every selected device, or removed (null).
    Attributes are kmeweb's own: 202 with `operation_id` null, done; `devices` counts the
    devices that changed.
    """
    n = devices.set_selection_attributes(
        db.session, json.selection(), json.changes, caller(), json.expected_count
    )
    return _done(None, n, query.dry_run)


@api.post(
    "/devices/user",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    query=DeviceDryRun,
    body=DeviceUserIn,
    answers=BULK,
)
def set_device_user(query: DeviceDryRun, json: DeviceUserIn):
    """Set or clear the devices' user

    The end user (null: none) and enrollment password KME hands to the devices' agent. 202:
    the operation sends it to KME (`operation_id` null when every device is of a
    Self-Maintained profile: done).
    """
    operation, n = devices.set_selection_user(
        db.session, json.selection(), json.end_user_id, json.password, caller(), json.expected_count
    )
    return _done(operation, n, query.dry_run)


@api.post(
    "/profiles/<int:profile_id>/imports",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    body=DeviceImportIn,
    answers={200: DeviceImportPreview, 404: None, 409: None, 413: None},
)
def preview_device_import(profile_id: int, json: DeviceImportIn) -> DeviceImportPreview:
    """Preview an import of devices into a Self-Maintained profile

    Send the CSV file as text: `{"csv": "imei,serial,username\\n356938035643809,,jane\\n"}`.
    The answer says what confirming would do (counts) and every row's errors; nothing is
    written. A file that cannot be read at all is a 422 `invalid_csv` naming the rows at fault
    (413 `too_large`: past the CSV size limit).
    """
    stream = io.BytesIO(json.csv.encode(errors="replace"))
    try:
        preview = importer.preview_import(
            db.session, profile_id, stream, json.filename or "api.csv", caller()
        )
    except ImportRejected as err:
        raise _refused(err) from None
    return DeviceImportPreview.of(preview)


@api.post(
    "/profiles/<int:profile_id>/imports/<preview_id>/confirm",
    scope=Scope.DEVICES_WRITE,
    tag=TAG,
    answers={202: Accepted, 404: None, 409: None},
)
def confirm_device_import(profile_id: int, preview_id: str):
    """Confirm an import preview

    202: the operation writes every device of the preview, all or nothing. A preview with
    errors is a 422 `invalid_csv` listing them; an expired one a 404.
    """
    try:
        operation = importer.start_import(db.session, profile_id, preview_id, caller())
    except ImportRejected as err:
        raise _refused(err) from None
    return _done(operation, operation.total)
