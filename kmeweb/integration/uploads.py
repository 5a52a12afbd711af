"""Uploads: the Uploads tab, an upload's View page and the CSV of devices awaiting approval.

Read-only queries (approving lives in kmeweb.integration.approvals).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from kmeweb.devices.models import Approval, Device
from kmeweb.errors import NotFound
from kmeweb.integration.models import Reseller, Upload
from kmeweb.sqlutil import chunks


def get_upload_or_404(session: Session, upload_id: int) -> Upload:
    """Raises NotFound."""
    upload = session.get(Upload, upload_id)
    if upload is None:
        raise NotFound("No such upload.")
    return upload


def pending_devices_query(upload_id: int) -> Select:
    """Devices of the upload still waiting for approval, by id (View page, CSV download)."""
    return (
        select(Device)
        .where(Device.upload_id == upload_id, Device.approval == Approval.PENDING)
        .order_by(Device.id)
    )


UPLOAD_SORTS = ("upload_id", "reseller", "order", "uploaded_at", "devices", "pending", "status")


def _pending_subquery():
    return (
        select(func.count())
        .select_from(Device)
        .where(Device.approval == Approval.PENDING, Device.upload_id == Upload.id)
        .correlate(Upload)
        .scalar_subquery()
    )


def list_uploads_query(
    search: str | None = None, sort: str = "uploaded_at", descending: bool = True
) -> Select:
    """Rows (Upload, reseller name) for the Uploads tab. `search` matches the upload id, the
    reseller's name or Knox id, or the order number; `sort` is one of UPLOAD_SORTS. Pending
    counts come from `pending_counts` for the page shown (except when sorting by them)."""
    stmt = _searched(
        select(Upload, Reseller.name.label("reseller_name")).outerjoin(
            Reseller, Upload.reseller_id == Reseller.id
        ),
        search,
    )
    column = {
        "upload_id": Upload.kme_upload_id,
        "reseller": func.lower(func.coalesce(Reseller.name, "")),
        "order": func.coalesce(Upload.order_number, ""),
        "uploaded_at": Upload.uploaded_at,
        "devices": Upload.device_count,
        "pending": _pending_subquery(),
        "status": Upload.status,
    }.get(sort, Upload.uploaded_at)
    key = column.desc() if descending else column.asc()
    tie = Upload.id.desc() if descending else Upload.id.asc()
    return stmt.order_by(key, tie)


def _searched(stmt: Select, search: str | None) -> Select:
    """`stmt` (joined to Reseller) narrowed to uploads whose upload id, order number, reseller
    name or Knox reseller id contains `search`."""
    search = (search or "").strip()
    if not search:
        return stmt
    return stmt.where(
        or_(
            Upload.kme_upload_id.icontains(search, autoescape=True),
            Upload.order_number.icontains(search, autoescape=True),
            Reseller.name.icontains(search, autoescape=True),
            Reseller.kme_reseller_id.icontains(search, autoescape=True),
        )
    )


def upload_rows(search: str | None = None) -> Select:
    """Rows (upload id, Upload, reseller name) matching `search` as the Uploads tab's search
    does, for a list paged by upload id (the JSON API); pending counts from `pending_counts`."""
    return _searched(
        select(Upload.id, Upload, Reseller.name.label("reseller_name")).outerjoin(
            Reseller, Upload.reseller_id == Reseller.id
        ),
        search,
    )


def pending_counts(session: Session, upload_ids: Sequence[int]) -> dict[int, int]:
    """{upload id: devices still waiting for approval}, one grouped query (the index on
    device(approval, upload_id) answers it alone)."""
    counts = dict.fromkeys(upload_ids, 0)
    for chunk in chunks(list(upload_ids), 900):
        rows = session.execute(
            select(Device.upload_id, func.count())
            .where(Device.approval == Approval.PENDING, Device.upload_id.in_(chunk))
            .group_by(Device.upload_id)
        )
        counts.update({upload_id: n for upload_id, n in rows})
    return counts


def pending_count(session: Session, upload_id: int) -> int:
    """Devices of one upload still waiting for approval."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Device)
            .where(Device.upload_id == upload_id, Device.approval == Approval.PENDING)
        )
        or 0
    )


def upload_devices_query(upload_id: int, search: str | None = None) -> Select:
    """The View page: devices of the upload waiting for approval, by id; `search` matches
    IMEI, serial or model."""
    stmt = pending_devices_query(upload_id)
    search = (search or "").strip()
    if search:
        stmt = stmt.where(
            or_(
                Device.imei.icontains(search, autoescape=True),
                Device.serial.icontains(search.upper(), autoescape=True),
                Device.model.icontains(search, autoescape=True),
            )
        )
    return stmt


PENDING_CSV_HEADER = (
    "imei",
    "serial",
    "model",
    "upload_id",
    "reseller",
    "order_number",
    "uploaded_at",
)


def pending_devices_rows(upload_id: int | None = None) -> Select:
    """Rows (id, then PENDING_CSV_HEADER's columns) of the devices waiting for approval, of
    one upload or of all; read it with csvexport.keyset_chunks on Device.id."""
    stmt = (
        select(
            Device.id,
            Device.imei,
            Device.serial,
            Device.model,
            Upload.kme_upload_id,
            Reseller.name,
            Upload.order_number,
            Upload.uploaded_at,
        )
        .join(Upload, Device.upload_id == Upload.id)
        .outerjoin(Reseller, Upload.reseller_id == Reseller.id)
        .where(Device.approval == Approval.PENDING)
    )
    if upload_id is not None:
        stmt = stmt.where(Device.upload_id == upload_id)
    return stmt
