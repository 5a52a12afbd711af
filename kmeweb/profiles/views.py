"""Devices › Bulk Enrollment: the profile list, the profile forms, the profile page and its
device actions (htmx dialogs that are plain pages without JavaScript), inventory CSV."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, flash, request, url_for
from flask_login import current_user
from sqlalchemy import select

from kmeweb import csvexport
from kmeweb.devices import services as devices
from kmeweb.directory import services as directory
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, DomainError, ValidationError
from kmeweb.extensions import db
from kmeweb.forms import attach_error, invalid
from kmeweb.htmx import is_htmx, redirect, render
from kmeweb.operations.models import Operation
from kmeweb.pagination import page_args, paginate
from kmeweb.profiles import forms as f
from kmeweb.profiles import services
from kmeweb.profiles.models import Profile
from kmeweb.sync.status import profile_statuses

bp = Blueprint("profiles", __name__, url_prefix="/profiles")

DIALOG_PAGE = "profiles/dialog_page.html"
USER_CHOICES = 50


def _per_page() -> tuple[int, int]:
    return page_args(current_app.config.get("PAGE_SIZE", 50))


def _user_choices(selected: Any, search: str = "") -> list[tuple[str, str]]:
    """ "No user", the selected user, then the users matching `search` (first 50)."""
    choices = [("", "No user")]
    seen: set[int] = set()
    try:
        selected_id = int(selected) if selected not in (None, "") else None
    except (TypeError, ValueError):
        selected_id = None
    if selected_id is not None:
        user = db.session.get(EndUser, selected_id)
        if user is not None:
            choices.append((str(user.id), _user_label(user)))
            seen.add(user.id)
    for user in directory.search_users(db.session, search, limit=USER_CHOICES):
        if user.id not in seen:
            choices.append((str(user.id), _user_label(user)))
    return choices


def _with_picker(form: Any, selected: Any) -> Any:
    """Fill a Select User picker: its options, and its search box wired for htmx."""
    form.end_user_id.choices = f.choices(_user_choices(selected))
    # A list box: the matches of a search show at once, no dropdown to open.
    form.end_user_id.render_kw = {"size": 5}
    form.user_search.render_kw = {
        "hx-get": url_for("profiles.users"),
        "hx-trigger": "input changed delay:250ms, search",
        "hx-target": "#end_user_id",
        "hx-include": "#end_user_id",
        "hx-swap": "innerHTML",
        "data-no-enter": "",
        "autocomplete": "off",
    }
    return form


def _user_label(user: EndUser) -> str:
    return f"{user.display_name} ({user.username})" if user.display_name else user.username


def _attach(form: Any, err: DomainError, fields: dict[str, str]) -> None:
    """Like kmeweb.forms.attach_error, and into FieldList rows ("custom_keys.2.value")."""
    name = err.field or ""
    parts = name.split(".")
    if len(parts) == 3 and parts[1].isdigit() and parts[0] in form._fields:
        rows = form[parts[0]].entries
        index = int(parts[1])
        if index < len(rows) and parts[2] in rows[index].form._fields:
            sub = rows[index].form[parts[2]]
            sub.errors = [*sub.errors, err.message]
            return
    attach_error(form, err, fields)


def _selection_ids(profile: Profile, values: Any) -> tuple[list[int], dict[str, str]]:
    """The device ids a request selects on a profile's page, and the filters of an
    "all N matching" selection."""
    if values.get("all_matching") == "1":
        filters = {k: (values.get(k) or "") for k in ("q", "registration", "sync")}
        ids = devices.select_device_ids(
            db.session,
            profile.id,
            filters["q"] or None,
            filters["registration"] or None,
            filters["sync"] or None,
        )
        return ids, filters
    ids = []
    for raw in values.getlist("device_ids"):
        if raw.isdigit() and len(raw) < 11:
            ids.append(int(raw))
    return list(dict.fromkeys(ids)), {}


def _dialog(
    template: str,
    profile: Profile,
    form: Any,
    code: int = 200,
    **context: Any,
):
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


def _dialog_submit(
    form: Any,
    action: Callable[[], Any],
    on_success: Callable[[Any], Any],
    render_again: Callable[[int], Any],
    fields: dict[str, str] | None = None,
):
    """Like kmeweb.forms.submit for a dialog: every refusal of the service (422 for bad
    input, 409 for a conflict with the current state) shows inside the dialog, since the
    flash area sits behind it."""
    if form.validate_on_submit():
        try:
            result = action()
        except DomainError as err:
            db.session.rollback()
            _attach(form, err, fields or {})
            return render_again(422 if isinstance(err, ValidationError) else 409)
        db.session.commit()
        return on_success(result)
    return render_again(422)


def _to_profile(profile_id: int, operation: Operation | None = None, anchor: str = ""):
    args: dict[str, Any] = {"profile_id": profile_id}
    if operation is not None:
        args["op"] = operation.id
    return redirect(url_for("profiles.detail", **args) + anchor)


def _summary(profile: Profile, counts: tuple[int, int, int] | None = None) -> dict[str, Any]:
    if counts is None:
        counts = services.profile_counts(db.session, [profile.id])[profile.id]
    total, registered, pending = counts
    status = profile_statuses(db.session, [profile.id]).get(profile.id)
    user = db.session.get(EndUser, profile.end_user_id) if profile.end_user_id else None
    return {
        "total": total,
        "registered": registered,
        "pending": pending,
        "status": status,
        "user": user,
        "token_status": services.token_status(profile),
        "expired": services.token_expired(profile),
    }


@bp.get("/")
def index():
    """Bulk Enrollment: the profiles, the Samsung KME Default Profile first."""
    form = f.ProfileFilterForm()
    valid = form.validate_query()
    search = None if form.q.errors else form.q.data
    sort = form.sort.data if form.sort.data in f.PROFILE_SORTS else "name"
    page, per_page = _per_page()
    profiles = paginate(db.session, services.list_profiles_query(search, sort), page, per_page)
    ids = [p.id for p in profiles.items]
    counts = services.profile_counts(db.session, ids)
    statuses = profile_statuses(db.session, ids)
    users = devices.usernames(db.session, [p.end_user_id for p in profiles.items])
    return render(
        "profiles/index.html",
        "profiles/_list.html",
        code=200 if valid else 422,
        form=form,
        profiles=profiles,
        counts=counts,
        statuses=statuses,
        users=users,
        kinds=f.KIND_LABELS,
    )


@bp.get("/<int:profile_id>/sync-status")
def sync_status(profile_id: int):
    """A profile's Sync Status badge (htmx polls it while KME work is pending)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    status = profile_statuses(db.session, [profile.id]).get(profile.id)
    return render(
        "profiles/_sync_status.html",
        "profiles/_sync_status.html",
        profile_id=profile.id,
        st=status,
    )


@bp.get("/users")
def users():
    """The options of a Select User picker for what was typed (htmx search as you type)."""
    selected = request.args.get("end_user_id", "")
    search = (request.args.get("user_search") or "")[:254]
    return render(
        "profiles/_user_options.html",
        "profiles/_user_options.html",
        choices=_user_choices(selected, search),
        selected=selected,
    )


def _profile_form_context(kind: str, profile: Profile | None = None) -> dict[str, Any]:
    return {"kind": kind, "profile": profile, "kinds": f.KIND_LABELS}


@bp.get("/new")
def new():
    """Add: choose Self-Maintained or Samsung Knox Mobile Enrollment, then Next."""
    choice = f.KindForm()
    if "kind" not in request.args or not choice.validate():
        code = 422 if "kind" in request.args else 200
        return render("profiles/new.html", "profiles/new.html", code=code, choice=choice)
    kind = choice.kind.data
    form = f.ProfileForm(formdata=None)
    _with_picker(form, None)
    return render(
        "profiles/form.html",
        "profiles/_form.html",
        form=form,
        preview=_preview_for(form, kind, None),
        **_profile_form_context(kind),
    )


def _profile_data(form: f.ProfileForm, kind: str, profile: Profile | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": form.name.data if profile is None or kind != "kme_default" else profile.name,
        "description": form.description.data,
    }
    if kind != "kme_default":
        data["end_user_id"] = form.end_user_id.data or None
    if kind == "kme":
        data["without_token"] = bool(form.without_token.data)
        data["config"] = form.config()
        data["secrets"] = {
            "wifi_password": form.extra_wifi_password.data or None,
            "wifi_password_clear": bool(form.extra_wifi_password_clear.data),
        }
    return data


@bp.post("/new")
def create():
    """Done: create the profile (a KME one reaches KME through the outbox)."""
    kind = request.form.get("kind", "")
    if kind not in services.CREATABLE_KINDS:
        raise ValidationError("Choose Samsung Knox Mobile Enrollment or Self-Maintained.")
    form = f.ProfileForm()
    _with_picker(form, form.end_user_id.data)

    def action() -> Profile:
        data = _profile_data(form, kind, None)
        data["kind"] = kind
        if kind == "kme":
            data["token_expiry_days"] = form.expiry()
        return services.create_profile(db.session, data, current_user)

    def done(profile: Profile):
        flash(f"Profile “{profile.name}” was created.", "success")
        return redirect(url_for("profiles.index"))

    def again(code: int):
        response = invalid(
            form,
            page="profiles/form.html",
            partial="profiles/_form.html",
            context=lambda: {
                **_profile_form_context(kind),
                "preview": _preview_for(form, kind, None),
            },
        )
        response.status_code = code
        return response

    return _dialog_submit(form, action, done, again, fields=f.PROFILE_FIELDS)


def _edit_form(profile: Profile) -> f.ProfileForm:
    data = {
        "name": profile.name,
        "description": profile.description,
        "without_token": profile.without_token,
        "end_user_id": str(profile.end_user_id or ""),
        "version": profile.version,
        "original": json.dumps(services.edit_snapshot(profile), default=str),
        **f.form_data_from_config(profile.config or {}),
    }
    form = f.ProfileForm(formdata=None, data=data)
    _with_picker(form, profile.end_user_id)
    return form


@bp.get("/<int:profile_id>/edit")
def edit(profile_id: int):
    """Edit a profile (the Default Profile: its description only)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = _edit_form(profile)
    return render(
        "profiles/form.html",
        "profiles/_form.html",
        form=form,
        preview=_preview_for(form, profile.kind, profile),
        summary=_summary(profile),
        token_form=_token_form(profile),
        **_profile_form_context(profile.kind, profile),
    )


def _snapshot(form: f.ProfileForm) -> Any:
    try:
        return json.loads(form.original.data or "")
    except ValueError:
        return None


@bp.post("/<int:profile_id>/edit")
def update(profile_id: int):
    """Done: save the edit; 409 naming what changed when someone else saved first."""
    profile = services.get_profile_or_404(db.session, profile_id)
    kind = profile.kind
    form = f.ProfileForm()
    _with_picker(form, form.end_user_id.data)

    def context() -> dict[str, Any]:
        fresh = db.session.get(Profile, profile_id)
        return {
            **_profile_form_context(kind, fresh),
            "preview": _preview_for(form, kind, fresh),
            "summary": _summary(fresh),
            "token_form": _token_form(fresh),
        }

    if form.validate_on_submit():
        try:
            services.update_profile(
                db.session,
                profile_id,
                _profile_data(form, kind, profile),
                form.version.data,
                current_user,
            )
        except ValidationError as err:
            db.session.rollback()
            _attach(form, err, f.PROFILE_FIELDS)
        except Conflict:
            db.session.rollback()
            fresh = services.get_profile_or_404(db.session, profile_id)
            if str(fresh.version) == str(form.version.data):
                raise
            form.form_errors.append(services.stale_edit_message(_snapshot(form), fresh))
            # A second Done saves over the other admin's version, deliberately.
            form.version.data = str(fresh.version)
            form.original.data = json.dumps(services.edit_snapshot(fresh), default=str)
            response = invalid(
                form, page="profiles/form.html", partial="profiles/_form.html", context=context
            )
            response.status_code = 409
            return response
        else:
            db.session.commit()
            flash(f"Profile “{profile.name}” was saved.", "success")
            return redirect(url_for("profiles.index"))
    return invalid(form, page="profiles/form.html", partial="profiles/_form.html", context=context)


@bp.post("/<int:profile_id>/delete")
def delete(profile_id: int):
    """Delete a profile; its devices return to the Default Profile."""
    profile = services.get_profile_or_404(db.session, profile_id)
    name = profile.name
    moved = services.delete_profile(db.session, profile_id, current_user)
    db.session.commit()
    note = f" {moved:,} devices went back to the {services.DEFAULT_PROFILE_NAME}." if moved else ""
    flash(f"Profile “{name}” was deleted.{note}", "success")
    return redirect(url_for("profiles.index"))


def _preview_for(form: f.ProfileForm, kind: str, profile: Profile | None) -> dict[str, Any]:
    """What the device receives for the values in the form (secrets masked)."""
    config = form.config()
    user_id = form.end_user_id.data
    username = None
    if user_id and str(user_id).isdigit():
        username = db.session.scalar(select(EndUser.username).where(EndUser.id == int(user_id)))
    has_password = bool(form.extra_wifi_password.data) or (
        profile is not None
        and services.has_secret(profile, "wifi_password")
        and not form.extra_wifi_password_clear.data
    )
    return services.preview_bundle(
        config,
        kind,
        token=profile.token if profile is not None else None,
        without_token=bool(form.without_token.data),
        username=username,
        has_wifi_password=has_password,
    )


@bp.post("/preview")
def preview():
    """The live preview beside the profile form: the admin-extras bundle for what is typed."""
    kind = request.form.get("kind", "kme")
    if kind not in services.KME_KINDS + ("self_maintained",):
        kind = "kme"
    profile_id = request.form.get("profile_id", "")
    profile = None
    if profile_id.isdigit() and len(profile_id) < 11:
        profile = db.session.get(Profile, int(profile_id))
    form = f.ProfileForm(meta={"csrf": False})
    return render(
        "profiles/_preview.html",
        "profiles/_preview.html",
        preview=_preview_for(form, kind, profile),
    )


def _device_filters(form: f.DeviceFilterForm) -> dict[str, Any]:
    data = {name: (None if fld.errors else fld.data) for name, fld in form._fields.items()}
    return {
        "search": data["q"] or None,
        "registration": data["registration"] or None,
        "sync_state": data["sync"] or None,
        "sort": data["sort"] if data["sort"] in f.DEVICE_SORTS else "imei",
        "descending": data["order"] == "desc",
    }


@bp.get("/<int:profile_id>")
def detail(profile_id: int):
    """View: the profile's details, then its devices (search, filter, sort, select)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.DeviceFilterForm()
    valid = form.validate_query()
    filters = _device_filters(form)
    page, per_page = _per_page()
    counts = services.profile_counts(db.session, [profile.id])[profile.id]
    known_total = None  # the summary's counts are the table's total unless it is searched
    if not filters["search"] and not filters["sync_state"]:
        known_total = {None: counts[0], "registered": counts[1], "pending": counts[2]}.get(
            filters["registration"]
        )
    rows = paginate(
        db.session, devices.devices_query(profile.id, **filters), page, per_page, known_total
    )
    operation = None
    op_id = request.args.get("op", "")
    if op_id.isdigit() and len(op_id) < 11:
        operation = db.session.get(Operation, int(op_id))
    context = {
        "profile": profile,
        "form": form,
        "rows": rows,
        "users": devices.usernames(db.session, [d.end_user_id for d in rows.items]),
        "filtered": bool(filters["search"] or filters["registration"] or filters["sync_state"]),
        "kinds": f.KIND_LABELS,
    }
    if is_htmx() and request.args.get("part") == "devices":
        return render("profiles/detail.html", "profiles/_devices.html", **context)
    return render(
        "profiles/detail.html",
        "profiles/_devices.html",
        code=200 if valid else 422,
        summary=_summary(profile, counts),
        op=operation,
        **context,
    )


@bp.get("/<int:profile_id>/inventory.csv")
def inventory(profile_id: int):
    """Download Existing Inventory: every device of the profile, streamed."""
    profile = services.get_profile_or_404(db.session, profile_id)
    rows = devices.inventory_rows(db.session, profile.id)
    name = csvexport.dated_filename(f"inventory-{profile.name}")
    return csvexport.csv_response(name, devices.INVENTORY_HEADER, rows)


def _selection_form(form: f.SelectionForm, profile: Profile, ids: list[int], filters) -> None:
    form.from_profile_id.data = str(profile.id)
    if filters:
        form.all_matching.data = "1"
        form.q.data = filters.get("q", "")
        form.registration.data = filters.get("registration", "")
        form.sync.data = filters.get("sync", "")


def _selection_context(profile: Profile, ids: list[int], filters: dict[str, str]):
    return {"ids": ids, "count": len(ids), "all_matching": bool(filters), "filters": filters}


def _check_selection(profile: Profile, ids: list[int], filters: dict[str, str]) -> None:
    """Ids ticked on an earlier page view must all still be in the profile; an "all N
    matching" selection was just read from it (an empty one is refused by the service)."""
    if not filters:
        devices.check_still_in(db.session, ids, profile.id)


def _move_targets(profile: Profile) -> list[tuple[str, str]]:
    return [(str(p.id), p.name) for p in services.kme_targets(db.session, exclude_id=profile.id)]


@bp.get("/<int:profile_id>/move")
def move_dialog(profile_id: int):
    """Move Devices: choose the KME profile the selected devices go to."""
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.args)
    form = f.MoveForm(formdata=None)
    form.profile_id.choices = f.choices(_move_targets(profile))
    return _show_selection_dialog("profiles/_move.html", profile, form, ids, filters)


@bp.post("/<int:profile_id>/move")
def move(profile_id: int):
    """Move the selected devices; the operation's progress shows on the profile page."""
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.form)
    form = f.MoveForm()
    form.profile_id.choices = f.choices(_move_targets(profile))

    def action() -> Operation:
        _check_selection(profile, ids, filters)
        target = form.profile_id.data
        target_id = int(target) if target and target.isdigit() and len(target) < 11 else None
        if target_id == profile.id:
            raise ValidationError("Choose another profile.", field="profile_id")
        return devices.move_devices(db.session, ids, target_id, current_user)

    def again(code: int):
        return _dialog(
            "profiles/_move.html",
            profile,
            form,
            code=code,
            **_selection_context(profile, ids, filters),
        )

    def done(operation: Operation):
        flash(f"{operation.label}: sending to KME.", "success")
        return _to_profile(profile.id, operation)

    return _dialog_submit(form, action, done, again)


@bp.get("/<int:profile_id>/unassign")
def unassign_dialog(profile_id: int):
    """Unassign: confirm that the selected devices go back to the Default Profile."""
    return _selection_dialog(profile_id, "profiles/_unassign.html")


@bp.post("/<int:profile_id>/unassign")
def unassign(profile_id: int):
    """Unassign the selected devices (back to the Samsung KME Default Profile)."""
    return _selection_action(
        profile_id,
        "profiles/_unassign.html",
        lambda ids: devices.unassign_devices(db.session, ids, current_user),
    )


@bp.get("/<int:profile_id>/delete-devices")
def delete_devices_dialog(profile_id: int):
    """Delete (Default Profile): confirm removing the selected devices from KME and kmeweb."""
    return _selection_dialog(profile_id, "profiles/_delete_devices.html")


@bp.post("/<int:profile_id>/delete-devices")
def delete_devices(profile_id: int):
    """Delete the selected devices from KME and kmeweb."""
    profile = services.get_profile_or_404(db.session, profile_id)
    if profile.kind != services.DEFAULT_KIND:
        raise Conflict("Devices are deleted from the Samsung KME Default Profile; unassign first.")
    return _selection_action(
        profile_id,
        "profiles/_delete_devices.html",
        lambda ids: devices.delete_devices(db.session, ids, current_user),
        done_message="{n:,} devices were deleted.",
    )


def _selection_dialog(profile_id: int, template: str):
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.args)
    form = f.DeleteDevicesForm(formdata=None)
    return _show_selection_dialog(template, profile, form, ids, filters)


def _show_selection_dialog(
    template: str, profile: Profile, form: Any, ids: list[int], filters: dict[str, str]
):
    """A dialog acting on the selected devices, saying so when none is selected."""
    _selection_form(form, profile, ids, filters)
    if not ids:
        form.form_errors.append("Select at least one device.")
    return _dialog(template, profile, form, **_selection_context(profile, ids, filters))


def _selection_action(
    profile_id: int,
    template: str,
    call: Callable[[list[int]], Operation | None],
    done_message: str = "",
):
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.form)
    form = f.DeleteDevicesForm()

    def action() -> Operation | None:
        _check_selection(profile, ids, filters)
        return call(ids)

    def again(code: int):
        return _dialog(
            template, profile, form, code=code, **_selection_context(profile, ids, filters)
        )

    def done(operation: Operation | None):
        if operation is not None:
            flash(f"{operation.label}: sending to KME.", "success")
        else:
            flash(done_message.format(n=len(ids)) or "Done.", "success")
        return _to_profile(profile.id, operation)

    return _dialog_submit(form, action, done, again)


@bp.get("/<int:profile_id>/attributes")
def attributes_dialog(profile_id: int):
    """Edit: the custom attributes of the selected devices."""
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.args)
    rows = [*devices.attribute_summary(db.session, ids), {}]  # and a blank row to add one
    form = f.AttributesForm(formdata=None, data={"rows": rows})
    return _show_selection_dialog("profiles/_attributes.html", profile, form, ids, filters)


@bp.post("/<int:profile_id>/attributes")
def attributes(profile_id: int):
    """Save Edit: set, change or remove attributes on every selected device."""
    profile = services.get_profile_or_404(db.session, profile_id)
    ids, filters = _selection_ids(profile, request.form)
    form = f.AttributesForm()

    def action() -> int:
        _check_selection(profile, ids, filters)
        changes: dict[str, Any] = {}
        for index, entry in enumerate(form.rows.entries):
            row = entry.form
            key = (row.key.data or "").strip()
            if not key:
                continue
            if key in changes:
                raise ValidationError(f"{key!r} appears twice.", field=f"rows.{index}.key")
            if row.remove.data:
                changes[key] = None
            elif (row.value.data or "").strip():
                changes[key] = row.value.data
        try:
            return devices.edit_attributes(db.session, ids, changes, current_user)
        except ValidationError as err:
            raise _row_error(err, form) from None

    def again(code: int):
        return _dialog(
            "profiles/_attributes.html",
            profile,
            form,
            code=code,
            **_selection_context(profile, ids, filters),
        )

    def done(n: int):
        flash(f"Attributes of {n:,} devices were saved.", "success")
        return _to_profile(profile.id)

    return _dialog_submit(form, action, done, again)


def _row_error(err: ValidationError, form: f.AttributesForm) -> ValidationError:
    """The service names "attributes.<key>": point at that row of the dialog."""
    if err.field and err.field.startswith("attributes."):
        key = err.field.split(".", 1)[1]
        for index, entry in enumerate(form.rows.entries):
            if (entry.form.key.data or "").strip() == key:
                field = "key" if "name" in err.message else "value"
                return ValidationError(err.message, field=f"rows.{index}.{field}")
    return ValidationError(err.message)


def _token_form(profile: Profile) -> f.TokenForm:
    return f.TokenForm(formdata=None, data={"version": profile.version})


@bp.get("/<int:profile_id>/token")
def token_dialog(profile_id: int):
    """Refresh Token: a new token (7..999 days or Never expires), or Extend the current one."""
    profile = services.get_profile_or_404(db.session, profile_id)
    return _dialog(
        "profiles/_token.html",
        profile,
        _token_form(profile),
        summary=_summary(profile),
        back=request.args.get("back"),
    )


@bp.post("/<int:profile_id>/token")
def token(profile_id: int):
    """Refresh or Extend the profile's token."""
    services.get_profile_or_404(db.session, profile_id)
    form = f.TokenForm()

    def action() -> Profile:
        if form.action.data == "extend":
            return services.extend_token(
                db.session,
                profile_id,
                form.days(),
                current_user,
                from_current=True,
                expected_version=form.version.data,
            )
        return services.refresh_token(
            db.session, profile_id, form.days(), current_user, expected_version=form.version.data
        )

    def again(code: int):
        fresh = db.session.get(Profile, profile_id)
        return _dialog(
            "profiles/_token.html",
            fresh,
            form,
            code=code,
            summary=_summary(fresh),
            back=request.form.get("back"),
        )

    def done(updated: Profile):
        what = "extended" if form.action.data == "extend" else "refreshed"
        flash(
            f"The token of “{updated.name}” was {what}: {services.token_status(updated)}.",
            "success",
        )
        if request.form.get("back") == "edit":
            return redirect(url_for("profiles.edit", profile_id=profile_id))
        if request.form.get("back") == "overview":  # Extend from the Overview's Needs attention
            return redirect(url_for("overview.index"))
        return _to_profile(profile_id)

    return _dialog_submit(form, action, done, again, fields={"token_expiry_days": "expiry_days"})


@bp.get("/<int:profile_id>/user")
def user_dialog(profile_id: int):
    """Change Associate User: search, select, Apply."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.UserForm(formdata=None, data={"end_user_id": str(profile.end_user_id or "")})
    _with_picker(form, profile.end_user_id)
    return _dialog("profiles/_user.html", profile, form)


@bp.post("/<int:profile_id>/user")
def set_user(profile_id: int):
    """Apply the associated user (empty clears it)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.UserForm()
    _with_picker(form, form.end_user_id.data)

    def action() -> Profile:
        return services.set_profile_user(
            db.session, profile_id, form.end_user_id.data or None, current_user
        )

    def done(updated: Profile):
        flash(f"The associated user of “{updated.name}” was changed.", "success")
        return _to_profile(profile_id)

    return _dialog_submit(
        form, action, done, lambda code: _dialog("profiles/_user.html", profile, form, code=code)
    )


@bp.get("/<int:profile_id>/configuration")
def configuration_dialog(profile_id: int):
    """Modify Configuration: the three sections, then Update."""
    profile = services.get_profile_or_404(db.session, profile_id)
    data = {"version": profile.version, **f.form_data_from_config(profile.config or {})}
    form = f.ConfigurationForm(formdata=None, data=data)
    return _dialog("profiles/_configuration.html", profile, form)


@bp.post("/<int:profile_id>/configuration")
def configuration(profile_id: int):
    """Update the profile's configuration (KME gets it through the outbox)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.ConfigurationForm()

    def action() -> Profile:
        data = {
            "config": form.config(),
            "secrets": {
                "wifi_password": form.extra_wifi_password.data or None,
                "wifi_password_clear": bool(form.extra_wifi_password_clear.data),
            },
        }
        return services.update_profile(
            db.session, profile_id, data, form.version.data, current_user
        )

    def done(updated: Profile):
        flash(f"The configuration of “{updated.name}” was updated.", "success")
        return _to_profile(profile_id)

    def again(code: int):
        return _dialog("profiles/_configuration.html", profile, form, code=code)

    return _dialog_submit(form, action, done, again, fields=f.PROFILE_FIELDS)


from kmeweb.profiles import imports as _imports  # noqa: E402,F401  (Import devices routes)
