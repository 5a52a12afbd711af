from __future__ import annotations

from flask import Blueprint, flash, request, url_for
from flask_login import current_user

from kmeweb.extensions import db
from kmeweb.htmx import is_htmx, redirect, refresh, render
from kmeweb.operations import services
from kmeweb.operations.models import OperationKind, OperationStatus
from kmeweb.pagination import page_args, paginate

bp = Blueprint("operations", __name__, url_prefix="/operations")

FILTERS = {"": "All", "active": "Running", "failed": "Failed", "done": "Done"}


@bp.get("/")
def index():
    """Recent operations, filtered by state (running, failed, done)."""
    status = request.args.get("status", "")
    if status not in FILTERS:
        status = ""
    page, per_page = page_args()
    operations = paginate(db.session, services.query_operations(status or None), page, per_page)
    return render(
        "operations/index.html",
        "operations/_table.html",
        operations=operations,
        status=status,
        filters=FILTERS,
    )


@bp.get("/<int:operation_id>")
def detail(operation_id: int):
    """One operation with its changes; as htmx, the self-polling status partial."""
    operation = services.get_operation(db.session, operation_id)
    changes = services.changes_of(db.session, operation_id)
    if (
        is_htmx()
        and operation.kind == OperationKind.DEVICE_IMPORT
        and operation.status == OperationStatus.DONE
    ):
        # A finished import changed the page's device table: reload the whole page.
        return refresh()
    return render(
        "operations/detail.html", "operations/_status.html", op=operation, changes=changes
    )


@bp.post("/<int:operation_id>/retry")
def retry(operation_id: int):
    """Queue a failed operation again."""
    operation = services.retry_operation(db.session, operation_id, current_user)
    db.session.commit()
    # Saved either way: if Redis cannot take the job now, the sweeper enqueues it later.
    flash(f"“{operation.label}” was queued again: it will be sent to KME.", "success")
    return redirect(url_for("operations.detail", operation_id=operation_id))
