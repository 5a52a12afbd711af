"""Devices on a profile's page: the device table's actions (Move Devices, Unassign, Delete,
Edit attributes, Remove) as form dialogs (kmeweb.dialogs), Download Existing Inventory, and Import
devices (upload a CSV file, see the preview with counts and every error, Confirm import).

The URLs stay under /profiles/<id>/: the devices are acted on where they are shown. The rules
live in kmeweb.devices.services and kmeweb.devices.importer.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from kmeweb import csvexport, dialogs
from kmeweb.csvimport import ImportRejected, too_large_message
from kmeweb.devices import forms, importer, portal
from kmeweb.devices import services as devices
from kmeweb.devices.selection import DeviceSelection, Values
from kmeweb.errors import NotFound, PermissionDenied
from kmeweb.extensions import csrf, db
from kmeweb.operations.models import Operation
from kmeweb.profiles import services as profiles
from kmeweb.profiles.models import Profile
from kmeweb.text import count

bp = Blueprint("devices", __name__, url_prefix="/profiles")

MOVE = "devices/_move.html"
UNASSIGN = "devices/_unassign.html"
DELETE = "devices/_delete_devices.html"
ATTRIBUTES = "devices/_attributes.html"
REMOVE = "devices/_remove_devices.html"
PORTAL = "devices/_portal.html"
IMPORT = "devices/_import.html"
# What a multipart body may add around the file itself (boundaries, headers, the CSRF token).
FORM_OVERHEAD = 64 * 1024


def _selected(profile_id: int, values: Values) -> tuple[Profile, DeviceSelection]:
    """The profile (NotFound) and the devices the request selects on its page."""
    profile = profiles.get_profile_or_404(db.session, profile_id)
    return profile, DeviceSelection.from_values(profile.id, values)


def _targets(profile: Profile) -> list[Profile]:
    return profiles.move_targets(db.session, profile.id)


def _started(profile: Profile, operation: Operation | None, message: str = "Done.") -> Response:
    """Back to the profile's page, where the operation's progress shows."""
    if operation is not None:
        flash(f"{operation.label}: sending to KME.", "success")
    else:
        flash(message, "success")
    return dialogs.back(profile.id, operation)


@bp.get("/<int:profile_id>/move")
def move_dialog(profile_id: int):
    """Move Devices: choose the KME profile the selected devices go to."""
    profile, selection = _selected(profile_id, request.args)
    form = forms.MoveForm(formdata=None).with_targets(_targets(profile))
    return dialogs.open_selection_dialog(MOVE, profile, form, selection)


@bp.post("/<int:profile_id>/move")
def move(profile_id: int):
    """Move the selected devices; the operation's progress shows on the profile page."""
    profile, selection = _selected(profile_id, request.form)
    form = forms.MoveForm().with_targets(_targets(profile))
    return dialogs.submit(
        form,
        lambda: devices.move_selection(db.session, selection, form.profile_id.data, current_user),
        lambda operation: _started(profile, operation),
        lambda code: dialogs.selection_dialog(MOVE, profile, form, selection, code),
    )


@bp.get("/<int:profile_id>/unassign")
def unassign_dialog(profile_id: int):
    """Unassign: confirm that the selected devices go back to the Default Profile."""
    profile, selection = _selected(profile_id, request.args)
    form = forms.DeleteDevicesForm(formdata=None)
    return dialogs.open_selection_dialog(UNASSIGN, profile, form, selection)


@bp.post("/<int:profile_id>/unassign")
def unassign(profile_id: int):
    """Unassign the selected devices (back to the Samsung KME Default Profile)."""
    profile, selection = _selected(profile_id, request.form)
    form = forms.DeleteDevicesForm()
    return dialogs.submit(
        form,
        lambda: devices.unassign_selection(db.session, selection, current_user),
        lambda operation: _started(profile, operation),
        lambda code: dialogs.selection_dialog(UNASSIGN, profile, form, selection, code),
    )


@bp.get("/<int:profile_id>/delete-devices")
def delete_devices_dialog(profile_id: int):
    """Delete (Default Profile): confirm removing the selected devices from KME and kmeweb."""
    profile, selection = _selected(profile_id, request.args)
    form = forms.DeleteDevicesForm(formdata=None)
    return dialogs.open_selection_dialog(DELETE, profile, form, selection)


@bp.post("/<int:profile_id>/delete-devices")
def delete_devices(profile_id: int):
    """Delete the selected devices from KME and kmeweb."""
    profile, selection = _selected(profile_id, request.form)
    devices.check_delete_from(profile)  # refused as a page: no dialog offers it there
    form = forms.DeleteDevicesForm()

    def done(result: tuple[Operation | None, int]) -> Response:
        operation, n = result
        return _started(
            profile, operation, f"{count(n, 'device')} {'was' if n == 1 else 'were'} deleted."
        )

    return dialogs.submit(
        form,
        lambda: devices.delete_selection(db.session, selection, current_user),
        done,
        lambda code: dialogs.selection_dialog(DELETE, profile, form, selection, code),
    )


def _remove_dialog(
    profile: Profile, form: forms.DeleteDevicesForm, selection: DeviceSelection, code: int = 200
) -> Response:
    """Remove, naming what it removes: the count and the first devices (or the filter)."""
    if code == 200:
        return dialogs.open_selection_dialog(REMOVE, profile, form, selection)
    return dialogs.selection_dialog(REMOVE, profile, form, selection, code)


@bp.get("/<int:profile_id>/remove")
def remove_dialog(profile_id: int):
    """Remove (Self-Maintained profile): confirm that the selected devices leave kmeweb."""
    if not current_user.can_write:  # the dialog is the action's first step: admins only
        raise PermissionDenied("Your role can look but not change anything.")
    profile, selection = _selected(profile_id, request.args)
    return _remove_dialog(profile, forms.DeleteDevicesForm(formdata=None), selection)


@bp.post("/<int:profile_id>/remove")
def remove(profile_id: int):
    """Remove the selected devices from kmeweb (audited); a Knox profile is refused (409)."""
    profile, selection = _selected(profile_id, request.form)
    form = forms.DeleteDevicesForm()

    def done(n: int) -> Response:
        flash(
            f"{n:,} device{'s were' if n != 1 else ' was'} removed from {profile.name}.", "success"
        )
        return dialogs.back(profile.id)

    return dialogs.submit(
        form,
        lambda: devices.remove_selection(db.session, selection, current_user),
        done,
        lambda code: _remove_dialog(profile, form, selection, code),
    )


def _portal_dialog(
    profile: Profile,
    action: str,
    form: forms.PortalForm,
    selection: DeviceSelection,
    code: int = 200,
) -> Response:
    """Send ours again / Take Samsung's, with the counts read now: how many devices are
    selected, how many were changed in the Samsung portal, how many KME cannot undo."""
    if action not in portal.ACTIONS:
        raise NotFound("No such action.")
    counts = portal.selection_counts(db.session, selection)
    if code == 200:
        form.expected_count.data = str(counts.selected)
        return dialogs.open_selection_dialog(
            PORTAL, profile, form, selection, action=action, counts=counts
        )
    return dialogs.selection_dialog(
        PORTAL, profile, form, selection, code, action=action, counts=counts
    )


@bp.get("/<int:profile_id>/portal/<action>")
def portal_dialog(profile_id: int, action: str):
    """Send ours again or Take Samsung's for devices changed in the Samsung portal."""
    if not current_user.can_write:  # the dialog is the action's first step: admins only
        raise PermissionDenied("Your role can look but not change anything.")
    profile, selection = _selected(profile_id, request.args)
    return _portal_dialog(profile, action, forms.PortalForm(formdata=None), selection)


@bp.post("/<int:profile_id>/portal/<action>")
def settle_portal(profile_id: int, action: str):
    """Settle the selected devices changed in the Samsung portal (ours again, or Samsung's)."""
    profile, selection = _selected(profile_id, request.form)
    form = forms.PortalForm()
    return dialogs.submit(
        form,
        lambda: portal.settle_selection(
            db.session, selection, action, current_user, form.expected()
        ),
        lambda outcome: _settled(profile, action, outcome),
        lambda code: _portal_dialog(profile, action, form, selection, code),
        fields={"expected_count": ""},  # the counts changed meanwhile: said on the form
    )


def _settled(profile: Profile, action: str, outcome: portal.PortalOutcome) -> Response:
    """Back to the profile's page, with the push's (or the job's) progress when there is one."""
    if outcome.later:
        flash(f"{outcome.operation.label}: started.", "success")
        return dialogs.to_profile(profile.id, outcome.operation)
    if action == portal.SEND_OURS:
        return _started(profile, outcome.operation, "Nothing needed sending.")
    n = outcome.devices
    flash(f"{count(n, 'device')} now {'holds' if n == 1 else 'hold'} Samsung's values.", "success")
    return dialogs.to_profile(profile.id)


@bp.get("/<int:profile_id>/attributes")
def attributes_dialog(profile_id: int):
    """Edit: the custom attributes of the selected devices."""
    profile, selection = _selected(profile_id, request.args)
    ids = devices.resolve_selection(db.session, selection, check=False)
    rows = [*devices.attribute_summary(db.session, ids), {}]  # and a blank row to add one
    form = forms.AttributesForm(formdata=None, data={"rows": rows})
    return dialogs.open_selection_dialog(ATTRIBUTES, profile, form, selection, ids)


@bp.post("/<int:profile_id>/attributes")
def attributes(profile_id: int):
    """Save Edit: set, change or remove attributes on every selected device."""
    profile, selection = _selected(profile_id, request.form)
    form = forms.AttributesForm()

    def action() -> int:
        rows = form.row_values()
        return devices.edit_selected_attributes(db.session, selection, rows, current_user)

    def done(n: int) -> Response:
        flash(f"Attributes of {count(n, 'device')} were saved.", "success")
        return dialogs.back(profile.id)

    return dialogs.submit(
        form,
        action,
        done,
        lambda code: dialogs.selection_dialog(ATTRIBUTES, profile, form, selection, code),
    )


@bp.get("/<int:profile_id>/inventory.csv")
def inventory(profile_id: int):
    """Download Existing Inventory: every device of the profile, streamed."""
    name, rows = devices.inventory_download(db.session, profile_id)
    return csvexport.csv_response(name, devices.INVENTORY_HEADER, rows)


def _import_dialog(
    profile: Profile,
    form: forms.ImportForm,
    preview: importer.Preview | None = None,
    code: int = 200,
) -> Response:
    errors = preview.errors[: importer.ERRORS_SHOWN] if preview is not None else []
    return dialogs.show(
        IMPORT,
        profile,
        form,
        code=code,
        preview=preview,
        shown_errors=errors,
        confirm_form=forms.ConfirmImportForm(formdata=None),
        message=None,
    )


@bp.get("/<int:profile_id>/import")
def import_dialog(profile_id: int):
    """Import devices: choose a CSV file (Download template shows the columns)."""
    profile = importer.get_profile(db.session, profile_id)
    return _import_dialog(profile, forms.ImportForm(formdata=None))


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
    form = forms.ImportForm(meta={"csrf": False})
    if not form.validate_on_submit():
        return _import_dialog(profile, form, code=422)
    upload = form.file.data
    try:
        preview = importer.preview_import(
            db.session, profile.id, upload.stream, upload.filename or "", current_user
        )
    except ImportRejected as err:
        return _rejected(profile, form, err)
    fresh = forms.ImportForm(formdata=None)
    return _import_dialog(profile, fresh, preview, code=200 if preview.can_import else 422)


def _rejected(profile: Profile, form: forms.ImportForm, err: ImportRejected) -> Response:
    """A file that cannot be read: its message on the file field, and its rows' errors."""
    db.session.rollback()
    form.file.errors = [err.message]
    filename = form.file.data.filename or ""
    preview = importer.Preview("", profile.id, filename, 0, {}, err.errors)
    return _import_dialog(profile, form, preview if err.errors else None, code=err.status)


def _too_large(profile: Profile) -> Response:
    """413 in the dialog, without reading the body."""
    limit = current_app.config["CSV_MAX_BYTES"]
    form = forms.ImportForm(formdata=None, meta={"csrf": False})
    form.file.errors = [too_large_message(limit)]
    response = _import_dialog(profile, form, code=413)
    response.headers["Connection"] = "close"  # the rest of the body is never read
    return response


@bp.errorhandler(RequestEntityTooLarge)
def _body_too_large(err: RequestEntityTooLarge):
    """A body past MAX_CONTENT_LENGTH is refused (413) before any view reads it; for Import
    devices the dialog says so, elsewhere werkzeug's own answer."""
    if request.endpoint == "devices.import_preview" and request.view_args:
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
    return dialogs.to_profile(profile.id, operation)
