"""Import devices on a Self-Maintained profile's page: upload a CSV file, see the preview
(counts and every error, downloadable), Confirm import (an operation with progress).

The routes belong to the profiles blueprint (kmeweb.profiles.views imports this module); the
rules live in kmeweb.devices.importer.
"""

from __future__ import annotations

from flask import current_app, flash, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from kmeweb import csvexport
from kmeweb.csvimport import ImportRejected
from kmeweb.devices import importer
from kmeweb.extensions import csrf, db
from kmeweb.profiles import forms as f
from kmeweb.profiles.models import Profile
from kmeweb.profiles.views import _dialog, _to_profile, bp

TEMPLATE = "profiles/_import.html"
# What a multipart body may add around the file itself (boundaries, headers, the CSRF token).
FORM_OVERHEAD = 64 * 1024


def _show(profile, form, preview=None, code: int = 200, message: str | None = None):
    errors = preview.errors[: importer.ERRORS_SHOWN] if preview is not None else []
    return _dialog(
        TEMPLATE,
        profile,
        form,
        code=code,
        preview=preview,
        shown_errors=errors,
        confirm_form=f.ConfirmImportForm(formdata=None),
        message=message,
    )


@bp.get("/<int:profile_id>/import")
def import_dialog(profile_id: int):
    """Import devices: choose a CSV file (Download template shows the columns)."""
    profile = importer.get_profile(db.session, profile_id)
    return _show(profile, f.ImportForm(formdata=None))


@bp.get("/<int:profile_id>/import/template.csv")
def import_template(profile_id: int):
    """Download template: the header and one example row."""
    importer.get_profile(db.session, profile_id)
    header, rows = importer.template_rows()
    return csvexport.csv_response("devices-import-template.csv", header, rows)


@bp.post("/<int:profile_id>/import")
@csrf.exempt  # checked in the view, once the body's declared size is known to be acceptable
def import_preview(profile_id: int):
    """Preview: check the whole file and show the counts and every error; nothing is written.
    A body larger than the limit is refused (413) before it is read."""
    limit = current_app.config["CSV_MAX_BYTES"]
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        return _too_large(importer.get_profile(db.session, profile_id))
    csrf.protect()  # 400 without a valid token, as every other state change
    profile = importer.get_profile(db.session, profile_id)
    form = f.ImportForm(meta={"csrf": False})
    if not form.validate_on_submit():
        return _show(profile, form, code=422)
    upload = form.file.data
    try:
        preview = importer.preview_import(
            db.session, profile.id, upload.stream, upload.filename or "", current_user
        )
    except ImportRejected as err:
        db.session.rollback()
        form.file.errors = [err.message]
        preview = importer.Preview("", profile.id, upload.filename or "", 0, {}, err.errors)
        return _show(profile, form, preview if err.errors else None, code=err.status)
    fresh = f.ImportForm(formdata=None)
    return _show(profile, fresh, preview, code=200 if preview.can_import else 422)


def _too_large(profile):
    """413 in the dialog, without reading the body."""
    limit = current_app.config["CSV_MAX_BYTES"]
    form = f.ImportForm(formdata=None, meta={"csrf": False})
    form.file.errors = [
        f"The file is larger than {limit / 1048576:,.0f} MB; split it into smaller files."
    ]
    response = _show(profile, form, code=413)
    response.headers["Connection"] = "close"  # the rest of the body is never read
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _body_too_large(err: RequestEntityTooLarge):
    """A body past MAX_CONTENT_LENGTH is refused (413) before any view reads it; for Import
    devices the dialog says so, elsewhere werkzeug's own answer."""
    if request.endpoint == "profiles.import_preview" and request.view_args:
        profile = db.session.get(Profile, request.view_args["profile_id"])
        if profile is not None:
            return _too_large(profile)
    return err


@bp.get("/<int:profile_id>/import/<token>/errors.csv")
def import_errors(profile_id: int, token: str):
    """The error report of a preview as CSV (formula-safe)."""
    profile = importer.get_profile(db.session, profile_id)
    data = importer.load_preview(token, profile.id, current_user)
    name = csvexport.dated_filename(f"import-errors-{profile.name}")
    return csvexport.csv_response(name, importer.REPORT_HEADER, importer.error_report(data))


@bp.post("/<int:profile_id>/import/<token>/confirm")
def import_confirm(profile_id: int, token: str):
    """Confirm import: the operation runs in the background; its progress shows on the page."""
    profile = importer.get_profile(db.session, profile_id)  # CSRF: checked before every POST
    operation = importer.start_import(db.session, profile.id, token, current_user)
    db.session.commit()
    flash(f"{operation.label}: started. The devices appear when it is done.", "success")
    return _to_profile(profile.id, operation)
