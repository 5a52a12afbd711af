"""Form dialogs on a profile's page (docs/web.md, "Form dialogs"): the dialog partial inside
Bootstrap's modal for htmx, a page of its own (profiles/dialog_page.html) without JavaScript.

A dialog shows every refusal of the service inside itself (422 for bad input, 409 for a
conflict with the current state): the flash area sits behind the modal. On success the page
behind reloads, with `?op=<id>` when an operation tracks the work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from flask import Response, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import Form

from kmeweb.devices import services as devices
from kmeweb.devices.models import Device
from kmeweb.devices.selection import DeviceSelection
from kmeweb.errors import DomainError, ValidationError
from kmeweb.extensions import db
from kmeweb.forms import attach_error
from kmeweb.htmx import is_htmx, redirect, render
from kmeweb.ids import parse_id
from kmeweb.operations.models import Operation
from kmeweb.profiles.models import Profile

DIALOG_PAGE = "profiles/dialog_page.html"
NAMED_DEVICES = 3  # a selection dialog names its first devices, then "… and N more"
T = TypeVar("T")


class SelectionCarrier(Protocol):
    """A dialog's form that carries a device selection in hidden fields
    (kmeweb.devices.forms.SelectionForm and its subclasses)."""

    form_errors: list[str]

    def carry(self, selection: DeviceSelection) -> None: ...


def show(
    template: str, profile: Profile, form: Form | SelectionCarrier, code: int = 200, **context: Any
) -> Response:
    """The dialog `template` on `profile`'s page: the partial for htmx, else the dialog page."""
    return render(
        DIALOG_PAGE,
        template,
        code=code,
        profile=profile,
        form=form,
        dialog=template,
        modal=is_htmx(),
        **context,
    )


def submit(
    form: FlaskForm,
    action: Callable[[], T],
    on_success: Callable[[T], Response],
    render_again: Callable[[int], Response],
    fields: Mapping[str, str] | None = None,
) -> Response:
    """Like kmeweb.forms.submit for a dialog: validate `form`, run `action`, commit and answer
    `on_success(result)`; every DomainError of the service rolls back and answers
    `render_again(422)` for bad input, `render_again(409)` otherwise, its message on the field
    it names (`fields` maps the service's names to the form's)."""
    if form.validate_on_submit():
        try:
            result = action()
        except DomainError as err:
            db.session.rollback()
            attach(form, err, fields or {})
            return render_again(422 if isinstance(err, ValidationError) else 409)
        db.session.commit()
        return on_success(result)
    return render_again(422)


def attach(form: Form, err: DomainError, fields: Mapping[str, str]) -> None:
    """Like kmeweb.forms.attach_error, and into FieldList rows ("custom_keys.2.value")."""
    for one in err.each():
        parts = (one.field or "").split(".")
        if len(parts) == 3 and parts[1].isdigit() and parts[0] in form._fields:
            rows = form[parts[0]].entries
            index = int(parts[1])
            if index < len(rows) and parts[2] in rows[index].form._fields:
                sub = rows[index].form[parts[2]]
                sub.errors = [*sub.errors, one.message]
                continue
        attach_error(form, one, fields)


def to_profile(profile_id: int, operation: Operation | None = None, anchor: str = "") -> Response:
    """Back to the profile's page, showing `operation`'s progress when there is one."""
    args: dict[str, Any] = {"profile_id": profile_id}
    if operation is not None:
        args["op"] = operation.id
    return redirect(url_for("profiles.detail", **args) + anchor)


def back(profile_id: int, operation: Operation | None = None) -> Response:
    """After a device action: back to the device page the dialog was opened from (its form
    carries `back`, the device's id) while that device still exists, else to the profile's
    page."""
    device_id = parse_id(request.form.get("back"))
    if device_id is not None and db.session.scalar(select(Device.id).where(Device.id == device_id)):
        return redirect(url_for("device.detail", device_id=device_id))
    return to_profile(profile_id, operation)


def selection_dialog(
    template: str,
    profile: Profile,
    form: Form | SelectionCarrier,
    selection: DeviceSelection,
    code: int = 200,
    ids: list[int] | None = None,
    **context: Any,
) -> Response:
    """A dialog acting on the selected devices (templates/profiles/_dialog.html `selection()`
    says which): `ids` are what `selection` names now, read when not given."""
    if ids is None:
        ids = devices.resolve_selection(db.session, selection, check=False)
    return show(
        template,
        profile,
        form,
        code=code,
        ids=ids,
        count=len(ids),
        names=devices.first_identifiers(db.session, ids, NAMED_DEVICES),
        all_matching=selection.all_matching,
        filters=selection.filter,
        filter_words=selection.filter.words(
            devices.rule_names(db.session, [selection.filter.rule_id])
        ),
        **context,
    )


def open_selection_dialog(
    template: str,
    profile: Profile,
    form: SelectionCarrier,
    selection: DeviceSelection,
    ids: list[int] | None = None,
    **context: Any,
) -> Response:
    """The selection dialog as it opens: its hidden fields carry the selection, and it says
    so when nothing is selected."""
    if ids is None:
        ids = devices.resolve_selection(db.session, selection, check=False)
    form.carry(selection)
    back_field = getattr(form, "back", None)
    if back_field is not None:  # opened from a device page: go back there afterwards
        back_field.data = str(parse_id(request.args.get("back")) or "")
    if not ids:
        form.form_errors.append("Select at least one device.")
    return selection_dialog(template, profile, form, selection, ids=ids, **context)
