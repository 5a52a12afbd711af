"""Admin › Knox Integration: the Settings, Uploads and Resellers tabs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, render_template, request, url_for
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from kmeweb import csvexport
from kmeweb.devices.models import Device
from kmeweb.errors import Conflict, ValidationError
from kmeweb.extensions import db
from kmeweb.forms import attach_error, invalid, submit
from kmeweb.htmx import current_page_path, is_htmx, redirect, render, retarget, with_flash
from kmeweb.integration.activation import activate_with_test, deactivate_integration, sync_now
from kmeweb.integration.approvals import approval_operation, approve_upload, upload_facts
from kmeweb.integration.connection import check_connection, connection_config
from kmeweb.integration.forms import (
    KEYS_JSON_MAX_BYTES,
    ActionForm,
    ApproveForm,
    SearchForm,
    SettingsForm,
    UploadFilterForm,
)
from kmeweb.integration.models import AuthMode, Reseller, get_integration
from kmeweb.integration.resellers import get_reseller_or_404, list_resellers_query
from kmeweb.integration.settings import save_settings
from kmeweb.integration.status import status_redis
from kmeweb.integration.uploads import (
    PENDING_CSV_HEADER,
    get_upload_or_404,
    list_uploads_query,
    pending_counts,
    pending_devices_rows,
    upload_devices_query,
)
from kmeweb.pagination import page_args, paginate
from kmeweb.rules.services import rule_names, rules_by_reseller, rules_naming_reseller
from kmeweb.sync.jobs import running_pull
from kmeweb.sync.status import integration_status

bp = Blueprint("integration", __name__, url_prefix="/integration")

SETTINGS_PAGE = "integration/index.html"
SETTINGS_FORM = "integration/_settings_form.html"


def _settings_context() -> dict[str, Any]:
    integration = get_integration(db.session)
    return {
        "integration": integration,
        "status": integration_status(db.session, status_redis()),
        "pull": running_pull(db.session),
        "action_form": ActionForm(formdata=None),  # for the buttons: never reads the body
    }


@bp.get("/")
def index():
    """The Settings tab: the integration's settings and its sync status."""
    context = _settings_context()
    form = SettingsForm.for_integration(context["integration"])
    return render(SETTINGS_PAGE, SETTINGS_PAGE, form=form, **context)


@bp.post("/settings")
def update():
    """Save the settings (the integration stays as active or inactive as it was)."""
    form = SettingsForm()

    def saved(_integration):
        flash("The Knox Integration settings were saved.", "success")
        return redirect(url_for("integration.index"))

    return submit(
        form,
        lambda: save_settings(db.session, form.settings_data(), current_user),
        saved,
        page=SETTINGS_PAGE,
        partial=SETTINGS_FORM,
        fields=form.field_map(),
        context=_settings_context,
    )


@bp.post("/test")
def test_connection():
    """Test connection with the typed settings (blank secrets: the saved ones); saves nothing."""
    form = SettingsForm()
    if form.validate_on_submit():
        try:
            config = connection_config(db.session, form.settings_data())
        except ValidationError as err:
            attach_error(form, err, form.field_map())
        else:
            result = check_connection(config)
            return render(
                SETTINGS_PAGE,
                "integration/_connection_result.html",
                form=form,
                result=result,
                **_settings_context(),
            )
    db.session.rollback()
    response = invalid(form, page=SETTINGS_PAGE, partial=SETTINGS_FORM, context=_settings_context)
    return retarget(response, "#settings-form")


@bp.post("/activate")
def activate():
    """Activate: test the connection, then save, create the Default Profile and pull."""
    form = SettingsForm()

    def activated(operation):
        flash(
            "The Knox integration is active: the Samsung KME Default Profile is ready and the "
            "first sync from KME has started.",
            "success",
        )
        return redirect(url_for("integration.index"))

    return submit(
        form,
        lambda: activate_with_test(
            db.session, form.settings_data(), check_connection, current_user
        ),
        activated,
        page=SETTINGS_PAGE,
        partial=SETTINGS_FORM,
        fields=form.field_map(),
        context=_settings_context,
    )


SETTINGS_POSTS = ("integration.update", "integration.test_connection", "integration.activate")


@bp.errorhandler(RequestEntityTooLarge)
def _body_too_large(err: RequestEntityTooLarge):
    """A body past MAX_CONTENT_LENGTH is refused (413) before any view reads it. On the
    settings form only keys.json can be that large: the message goes next to it (the typed
    values were never read, so the form shows the saved ones); elsewhere the central answer."""
    if request.endpoint not in SETTINGS_POSTS:
        return err
    context = _settings_context()
    form = SettingsForm.for_integration(context["integration"])
    form.auth_mode.data = AuthMode.LEGACY.value
    form.keys_file.errors = [
        f"This file is larger than {KEYS_JSON_MAX_BYTES // 1000} KB, so it is no keys.json "
        "(the Knox API portal's is a few KB): choose that file. Nothing was saved."
    ]
    response = render(SETTINGS_PAGE, SETTINGS_FORM, code=413, form=form, **context)
    response.headers["Connection"] = "close"  # the rest of the body is never read
    return retarget(response, "#settings-form")


@bp.post("/deactivate")
def deactivate():
    """Deactivate: syncing stops; settings, profiles and devices stay."""
    if not ActionForm().validate_on_submit():
        abort(400)
    deactivate_integration(db.session, current_user)
    db.session.commit()
    flash("The Knox integration is inactive: syncing stopped and all data was kept.", "success")
    return redirect(url_for("integration.index"))


@bp.post("/sync")
def sync():
    """Sync now: start a pull (or show the one running); its progress shows in place."""
    if not ActionForm().validate_on_submit():
        abort(400)
    operation, started = sync_now(db.session, current_user)
    db.session.commit()
    message = (
        "Sync from KME started."
        if started
        else "A sync from KME is already running; its progress is shown below."
    )
    if not is_htmx():
        flash(message, "success" if started else "info")
        return redirect(url_for("integration.index"))
    response = render("operations/_status.html", "operations/_status.html", op=operation)
    return with_flash(response, message, "success" if started else "info")


@bp.get("/uploads")
def uploads():
    """The Uploads tab: reseller uploads with search, sort and paging."""
    form = UploadFilterForm()
    valid = form.validate_query()
    stmt = list_uploads_query(
        None if form.q.errors else form.q.data, form.sort_key(), form.descending()
    )
    page, per_page = page_args()
    rows = paginate(db.session, stmt, page, per_page)
    ids = [u.id for u in rows.items]
    return render(
        "integration/uploads.html",
        "integration/_uploads_content.html",
        code=200 if valid else 422,
        form=form,
        uploads=rows,
        pending=pending_counts(db.session, ids),
        resellers=_reseller_names(u.reseller_id for u in rows.items),
    )


def _reseller_names(ids) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(
        db.select(Reseller.id, Reseller.name).where(Reseller.id.in_(wanted))
    ).all()
    return dict(rows)


def _upload_context(upload_id: int) -> dict[str, Any]:
    return {**upload_facts(db.session, upload_id), "back": current_page_path()}


@bp.get("/uploads/<int:upload_id>")
def upload(upload_id: int):
    """View: the devices of one upload that still need approval."""
    context = _upload_context(upload_id)
    form = SearchForm()
    valid = form.validate_query()
    stmt = upload_devices_query(upload_id, None if form.q.errors else form.q.data)
    page, per_page = page_args()
    summary = request.args.get("part") == "summary"  # htmx: the facts, after an operation
    devices = paginate(db.session, stmt, page, per_page)
    return render(
        "integration/upload.html",
        "integration/_upload_summary.html" if summary else "integration/_upload_devices.html",
        code=200 if valid else 422,
        form=form,
        devices=devices,
        rule_names=rule_names(db.session, [d.rule_id for d in devices.items]),
        approval=approval_operation(db.session, upload_id),
        **context,
    )


@bp.get("/uploads/<int:upload_id>/approve")
def confirm_approve(upload_id: int):
    """The Approve All Devices dialog (a page of its own without JavaScript)."""
    return render(
        "integration/approve.html",
        "integration/_approve_dialog.html",
        form=ApproveForm(),
        **_upload_context(upload_id),
    )


@bp.post("/uploads/<int:upload_id>/approve")
def approve(upload_id: int):
    """Approve All Devices: start the operation; its progress replaces the dialog."""
    form = ApproveForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        operation = approve_upload(
            db.session, upload_id, current_user, expected_pending=form.expected()
        )
    except Conflict as err:
        db.session.rollback()
        return render(
            "integration/approve.html",
            "integration/_approve_dialog.html",
            code=409,
            form=form,
            error=err.message,
            **_upload_context(upload_id),
        )
    db.session.commit()
    if not is_htmx():
        flash(f"“{operation.label}” started.", "success")
        return redirect(url_for("integration.upload", upload_id=upload_id))
    return render(
        "integration/approve.html",
        "integration/_approve_started.html",
        op=operation,
        **_upload_context(upload_id),
    )


@bp.get("/uploads/<int:upload_id>/devices.csv")
def download_upload(upload_id: int):
    """Download Devices as CSV: the unapproved devices of one upload."""
    upload = get_upload_or_404(db.session, upload_id)
    return _pending_csv(f"upload-{upload.kme_upload_id}-unapproved-devices", upload.id)


@bp.get("/uploads/devices.csv")
def download_pending():
    """Download Devices as CSV: the unapproved devices of every upload."""
    return _pending_csv("unapproved-devices", None)


def _pending_csv(stem: str, upload_id: int | None):
    stmt = pending_devices_rows(upload_id)
    rows = (row[1:] for row in csvexport.keyset_chunks(db.session, stmt, Device.id))
    return csvexport.csv_response(csvexport.dated_filename(stem), PENDING_CSV_HEADER, rows)


@bp.get("/resellers")
def resellers():
    """The Resellers tab: each reseller with the routing rules that name it."""
    form = SearchForm()
    valid = form.validate_query()
    stmt = list_resellers_query(None if form.q.errors else form.q.data)
    page, per_page = page_args()
    rows = paginate(db.session, stmt, page, per_page)
    return render(
        "integration/resellers.html",
        "integration/_resellers_content.html",
        code=200 if valid else 422,
        form=form,
        resellers=rows,
        rules=rules_by_reseller(db.session, [r.id for r in rows.items]),
    )


@bp.get("/resellers/<int:reseller_id>")
def reseller(reseller_id: int):
    """A reseller: the routing rules that say what happens to its uploads."""
    found = get_reseller_or_404(db.session, reseller_id)
    return render_template(
        "integration/reseller.html",
        reseller=found,
        rules=rules_naming_reseller(db.session, found.id),
    )
