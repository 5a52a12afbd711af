"""One device's page (/devices/<id>): who it is, where it is and why, its enrollment, its
values in kmeweb, at the last pull and in KME now (Check with Samsung), its actions, and the
console-wide device search (/devices/search).

The rules live in kmeweb.devices.page (what the page reads), kmeweb.devices.services (the
actions, shared with the profile page's dialogs), kmeweb.devices.portal (settling a change made
in the Samsung portal) and kmeweb.sync.check (the check's job: only sync calls KME).
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, request, url_for
from flask_login import current_user

from kmeweb import dialogs
from kmeweb.devices import forms, page, portal
from kmeweb.devices import services as devices
from kmeweb.errors import DomainError, PermissionDenied
from kmeweb.extensions import db
from kmeweb.htmx import redirect, render
from kmeweb.ids import optional_id
from kmeweb.pagination import page_args
from kmeweb.sync import check

bp = Blueprint("device", __name__, url_prefix="/devices")

PAGE = "devices/detail.html"
CHECK = "devices/_check.html"
USER = "devices/_device_user.html"
SEARCH_MAX = 100


def _to_device(device_id: int, anchor: str = "") -> Response:
    return redirect(url_for("device.detail", device_id=device_id) + anchor)


@bp.get("/<int:device_id>")
def detail(device_id: int):
    """The device page."""
    view = page.read_device_page(db.session, device_id)
    return render(PAGE, PAGE, view=view, device=view.device, last=_last_check(device_id))


def _last_check(device_id: int):
    return check.latest_check(db.session, device_id)


@bp.get("/<int:device_id>/check")
def check_status(device_id: int):
    """The Sync section's Samsung side: polled by htmx while the check runs."""
    view = page.read_device_page(db.session, device_id)
    return render(CHECK, CHECK, view=view, device=view.device, last=_last_check(device_id))


@bp.post("/<int:device_id>/check")
def start_check(device_id: int):
    """Check with Samsung: the job reads the device's live KME record; the page polls."""
    check.start_check(db.session, device_id, current_user)
    db.session.commit()
    return _to_device(device_id, "#sync")


def _settle(device_id: int, action, done: str) -> Response:
    """Send ours again / Take Samsung's for this one device; a refusal is flashed."""
    devices.get_device_or_404(db.session, device_id)
    try:
        action(db.session, [device_id], current_user)
    except DomainError as err:
        db.session.rollback()
        flash(err.message, "error")
        return _to_device(device_id, "#sync")
    db.session.commit()
    flash(done, "success")
    return _to_device(device_id, "#sync")


@bp.post("/<int:device_id>/send-ours")
def send_ours(device_id: int):
    """Send ours again: kmeweb's values go to KME once more."""
    return _settle(device_id, portal.send_ours_again, "kmeweb's values are being sent again.")


@bp.post("/<int:device_id>/take-samsungs")
def take_samsungs(device_id: int):
    """Take Samsung's: kmeweb keeps what the Samsung portal holds."""
    return _settle(device_id, portal.take_samsungs, "kmeweb now holds Samsung's values.")


def _user_dialog(view: page.DevicePage, form: forms.DeviceUserForm, code: int = 200) -> Response:
    if view.profile is None:  # pending approval: no profile, no user (the page offers none)
        raise PermissionDenied("A device waiting for approval has no Associated User yet.")
    users = page.user_choices(db.session, form.end_user_id.data)
    form.with_users(users, url_for("profiles.users"))
    return dialogs.show(USER, view.profile, form, code=code, device=view.device)


@bp.get("/<int:device_id>/user")
def user_dialog(device_id: int):
    """Change Associated User: search, select, optionally a new enrollment password."""
    if not current_user.can_write:  # the dialog is the action's first step: admins only
        raise PermissionDenied("Your role can look but not change anything.")
    view = page.read_device_page(db.session, device_id)
    selected = str(view.device.end_user_id or "")
    return _user_dialog(view, forms.DeviceUserForm(formdata=None, data={"end_user_id": selected}))


@bp.post("/<int:device_id>/user")
def set_user(device_id: int):
    """Apply the Associated User (No user clears it and the password); audited, pushed."""
    view = page.read_device_page(db.session, device_id)
    form = forms.DeviceUserForm()

    def action():
        user_id = optional_id(form.end_user_id.data, "end_user_id")
        password = form.password.data or None
        return devices.set_device_user(db.session, [device_id], user_id, password, current_user)

    def done(_operation) -> Response:
        flash("The Associated User was changed.", "success")
        return _to_device(device_id)

    return dialogs.submit(
        form, action, done, lambda code: _user_dialog(view, form, code), {"device_ids": ""}
    )


@bp.get("/search")
def search():
    """Find a device by IMEI, MEID, serial number or user: one match opens its page."""
    q = (request.args.get("q") or "").strip()[:SEARCH_MAX]
    number, per_page = page_args(25)
    found = page.find_devices(db.session, q, number, per_page)
    if found.single is not None:
        return redirect(url_for("device.detail", device_id=found.single))
    return render("devices/search.html", "devices/_search_results.html", q=q, found=found)
