"""A device's History: the timeline page (and its fragment for htmx), the next page of rows
("Older"), and the whole history as CSV. Viewers see and download it; nothing here changes
anything."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

from kmeweb import csvexport
from kmeweb.devices import history
from kmeweb.devices.models import Device
from kmeweb.extensions import db
from kmeweb.htmx import is_htmx, render

bp = Blueprint("history", __name__, url_prefix="/devices")

PAGE = "devices/history.html"
SECTION = "devices/_history_section.html"
ROWS = "devices/_history_rows.html"


def _device_or_404(device_id: int) -> Any:
    """The device, or for a deleted one an object naming its id (its history outlives it).
    Aborts 404 when there is neither."""
    device = db.session.get(Device, device_id)
    if device is None and not history.has_history(db.session, device_id):
        abort(404)
    if device is not None:
        return device
    return history.Gone(device_id, history.deleted_identifier(db.session, device_id))


@bp.app_template_global()
def device_history_page(device: Any, before: str | None = None) -> history.HistoryPage:
    """The first page of a device's history, for the section a page includes."""
    return history.device_history(db.session, device.id, before)


@bp.get("/<int:device_id>/history")
def detail(device_id: int):
    """The device's history, newest first; `before` pages to older entries."""
    device = _device_or_404(device_id)
    before = request.args.get("before") or None
    page = history.device_history(db.session, device_id, before)
    partial = ROWS if before and is_htmx() else SECTION
    return render(PAGE, partial, device=device, history_page=page, before=before)


@bp.get("/<int:device_id>/history.csv")
def download(device_id: int):
    """The whole history as CSV (streamed; cells a spreadsheet would run are neutralised)."""
    device = _device_or_404(device_id)
    name = csvexport.dated_filename(f"history-{device.identifier or device_id}")
    rows = history.csv_rows(db.session, device_id)
    return csvexport.csv_response(name, history.CSV_HEADER, rows)
