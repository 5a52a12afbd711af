"""Devices › Bulk Enrollment: the profile list, the profile forms, the profile page with its
device table, and the profile's own dialogs (Refresh Token, Change Associate User, Modify
Configuration: kmeweb.dialogs). The device table's actions live in kmeweb.devices.views."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, flash, request, url_for
from flask_login import current_user
from sqlalchemy import select

from kmeweb import dialogs
from kmeweb.devices import portal
from kmeweb.devices import services as devices
from kmeweb.devices.forms import DeviceFilterForm
from kmeweb.directory import services as directory
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, ValidationError
from kmeweb.extensions import db
from kmeweb.forms import choices, invalid, user_search_attrs
from kmeweb.htmx import is_htmx, redirect, render, trigger, with_flash
from kmeweb.ids import parse_id
from kmeweb.operations.models import Operation
from kmeweb.pagination import Page, page_args, paginate
from kmeweb.profiles import forms as f
from kmeweb.profiles import services
from kmeweb.profiles.models import Profile, ProfileKind
from kmeweb.sync.status import profile_statuses
from kmeweb.text import count

bp = Blueprint("profiles", __name__, url_prefix="/profiles")
bp.add_app_template_filter(services.mask_token, "mask_token")

USER_CHOICES = 50


def _per_page() -> tuple[int, int]:
    return page_args(current_app.config.get("PAGE_SIZE", 50))


def _user_choices(selected: Any, search: str = "") -> list[tuple[str, str]]:
    """ "No user", the selected user, then the users matching `search` (first 50)."""
    choices = [("", "No user")]
    seen: set[int] = set()
    selected_id = parse_id(selected)
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
    form.end_user_id.choices = choices(_user_choices(selected))
    # A list box: the matches of a search show at once, no dropdown to open.
    form.end_user_id.render_kw = {"size": 5}
    form.user_search.render_kw = user_search_attrs(url_for("profiles.users"))
    return form


def _user_label(user: EndUser) -> str:
    return f"{user.display_name} ({user.username})" if user.display_name else user.username


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
    users = directory.display_names(db.session, [p.end_user_id for p in profiles.items])
    return render(
        "profiles/index.html",
        "profiles/_list.html",
        code=200 if valid else 422,
        form=form,
        profiles=profiles,
        counts=counts,
        statuses=statuses,
        users=users,
        kinds=ProfileKind.labels(),
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
        code=422 if selected and parse_id(selected) is None else 200,
        choices=_user_choices(selected, search),
        selected=selected,
    )


def _profile_form_context(kind: str, profile: Profile | None = None) -> dict[str, Any]:
    return {
        "kind": kind,
        "profile": profile,
        "kinds": ProfileKind.labels(),
        "name_rule": services.NAME_RULE,
    }


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
    """What the services take from the profile form: Add (`profile` None) or Edit."""
    data: dict[str, Any] = {
        "name": form.name.data
        if profile is None or kind != ProfileKind.KME_DEFAULT
        else profile.name,
        "description": form.description.data,
    }
    if profile is None:
        data["kind"] = kind
    if kind != ProfileKind.KME_DEFAULT:
        data["end_user_id"] = form.end_user_id.data or None
    if kind == ProfileKind.KME:
        data["without_token"] = bool(form.without_token.data)
        data["config"] = form.config()
        data["secrets"] = form.secrets()
        if profile is None:
            data["token_expiry_days"] = form.expiry()
    return data


def _form_again(
    form: f.ProfileForm, kind: str, profile_id: int | None = None, code: int = 422
) -> Response:
    """The profile form again with its errors (Add, or Edit of `profile_id` as it is now)."""

    def context() -> dict[str, Any]:
        if profile_id is None:
            return {**_profile_form_context(kind), "preview": _preview_for(form, kind, None)}
        fresh = db.session.get(Profile, profile_id)
        return {
            **_profile_form_context(kind, fresh),
            "preview": _preview_for(form, kind, fresh),
            "summary": _summary(fresh),
            "token_form": _token_form(fresh),
        }

    response = invalid(
        form, page="profiles/form.html", partial="profiles/_form.html", context=context
    )
    response.status_code = code
    return response


@bp.post("/new")
def create():
    """Done: create the profile (a KME one reaches KME through the outbox)."""
    kind = request.form.get("kind", "")
    if kind not in services.CREATABLE_KINDS:
        raise ValidationError("Choose Samsung Knox Mobile Enrollment or Self-Maintained.")
    form = f.ProfileForm()
    _with_picker(form, form.end_user_id.data)

    def done(profile: Profile) -> Response:
        flash(f"Profile “{profile.name}” was created.", "success")
        return redirect(url_for("profiles.index"))

    return dialogs.submit(
        form,
        lambda: services.create_profile(db.session, _profile_data(form, kind, None), current_user),
        done,
        lambda code: _form_again(form, kind, code=code),
        fields=f.PROFILE_FIELDS,
    )


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
    if not form.validate_on_submit():
        return _form_again(form, kind, profile_id)
    try:
        data = _profile_data(form, kind, profile)
        services.update_profile(db.session, profile_id, data, form.version.data, current_user)
    except ValidationError as err:
        db.session.rollback()
        dialogs.attach(form, err, f.PROFILE_FIELDS)
        return _form_again(form, kind, profile_id)
    except Conflict as err:
        db.session.rollback()
        return _stale_edit(form, profile_id, err)
    db.session.commit()
    flash(f"Profile “{profile.name}” was saved.", "success")
    return redirect(url_for("profiles.index"))


def _stale_edit(form: f.ProfileForm, profile_id: int, err: Conflict) -> Response:
    """409: the form again, naming what someone else changed since it was opened. A second
    Done saves over their version, deliberately. Any other conflict goes to the error page."""
    fresh = services.get_profile_or_404(db.session, profile_id)
    if str(fresh.version) == str(form.version.data):
        raise err
    form.form_errors.append(services.stale_edit_message(_snapshot(form), fresh))
    form.version.data = str(fresh.version)
    form.original.data = json.dumps(services.edit_snapshot(fresh), default=str)
    return _form_again(form, fresh.kind, profile_id, code=409)


@bp.post("/<int:profile_id>/delete")
def delete(profile_id: int):
    """Delete a profile; its devices return to the Default Profile."""
    profile = services.get_profile_or_404(db.session, profile_id)
    name = profile.name
    moved = services.delete_profile(db.session, profile_id, current_user)
    db.session.commit()
    note = (
        f" {count(moved, 'device')} went back to the {services.DEFAULT_PROFILE_NAME}."
        if moved
        else ""
    )
    flash(f"Profile “{name}” was deleted.{note}", "success")
    return redirect(url_for("profiles.index"))


def _preview_for(form: f.ProfileForm, kind: str, profile: Profile | None) -> dict[str, Any]:
    """What the device receives for the values in the form (secrets masked)."""
    config = form.config()
    user_id = parse_id(form.end_user_id.data)
    username = None
    if user_id is not None:
        username = db.session.scalar(select(EndUser.username).where(EndUser.id == user_id))
    has_password = bool(form.extra_wifi_password.data) or (
        profile is not None
        and services.has_secret(profile, "wifi_password")
        and not form.extra_wifi_password_clear.data
    )
    return services.preview_bundle(
        config,
        kind,
        token=services.mask_token(profile.token) if profile is not None else None,
        without_token=bool(form.without_token.data),
        username=username,
        has_wifi_password=has_password,
    )


@bp.post("/preview")
def preview():
    """The live preview beside the profile form: the admin-extras bundle for what is typed."""
    kind = request.form.get("kind", "")
    if kind not in set(ProfileKind):
        kind = ProfileKind.KME
    profile_id = parse_id(request.form.get("profile_id"))
    profile = db.session.get(Profile, profile_id) if profile_id is not None else None
    form = f.ProfileForm(meta={"csrf": False})
    return render(
        "profiles/_preview.html",
        "profiles/_preview.html",
        preview=_preview_for(form, kind, profile),
    )


def _device_rows(profile: Profile, form: DeviceFilterForm, counts: tuple[int, int, int]) -> Page:
    """The page of the device table that the filter form asks for."""
    flt = form.device_filter()
    sort, descending = form.ordering()
    page, per_page = _per_page()
    query = devices.devices_query(
        profile.id, flt.q, flt.registration, flt.sync, sort, descending, flt.rule_id, flt.kme
    )
    # The summary's counts are the table's total unless it is searched: no COUNT then.
    return paginate(db.session, query, page, per_page, flt.known_total(counts))


def _shown_operation(raw: str) -> Operation | None:
    """The operation whose progress the page shows (`?op=<id>`, after an action)."""
    operation_id = parse_id(raw)
    return db.session.get(Operation, operation_id) if operation_id is not None else None


@bp.get("/<int:profile_id>")
def detail(profile_id: int):
    """View: the profile's details, then its devices (search, filter, sort, select)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = DeviceFilterForm().with_rules(devices.rules_placing(db.session, profile.id))
    valid = form.validate_query()
    counts = services.profile_counts(db.session, [profile.id])[profile.id]
    rows = _device_rows(profile, form, counts)
    context = {
        "profile": profile,
        "form": form,
        "rows": rows,
        "users": directory.usernames(db.session, [d.end_user_id for d in rows.items]),
        "placed_by": devices.rule_names(db.session, [d.rule_id for d in rows.items]),
        "portal_notes": portal.portal_notes(db.session, rows.items),
        "portal_flagged": portal.flagged_in_profile(db.session, profile.id),
        "kme_flags": portal.flags_in_profile(db.session, profile.id),
        "filtered": form.device_filter().active,
        "kinds": ProfileKind.labels(),
    }
    if is_htmx() and request.args.get("part") == "devices":
        return render("profiles/detail.html", "profiles/_devices.html", **context)
    return render(
        "profiles/detail.html",
        "profiles/_devices.html",
        code=200 if valid else 422,
        summary=_summary(profile, counts),
        op=_shown_operation(request.args.get("op", "")),
        **context,
    )


def _token_form(profile: Profile, version: str | None = None) -> f.TokenForm:
    return f.TokenForm(formdata=None, data={"version": version or profile.version})


def _token_dialog(
    profile: Profile, form: f.TokenForm, back: str | None, code: int = 200, confirm: bool = False
):
    """The token dialog; `confirm`: Refresh's second step, naming the devices that wait."""
    waiting, names = services.devices_awaiting_token(db.session, profile.id) if confirm else (0, [])
    return dialogs.show(
        "profiles/_token.html",
        profile,
        form,
        code=code,
        summary=_summary(profile),
        back=back,
        confirm=confirm,
        waiting=waiting,
        waiting_names=names,
    )


def _renew_token(form: f.TokenForm, profile_id: int) -> Profile:
    """Extend keeps the token (counted from its current expiry, never earlier); Set expiry
    date gives a date to a token that never expires; Refresh makes a new one."""
    version = form.version.data
    if form.extending():
        return services.extend_token(
            db.session, profile_id, form.days(), current_user, True, version
        )
    if form.setting_expiry():
        return services.set_token_expiry(db.session, profile_id, form.days(), current_user, version)
    return services.refresh_token(
        db.session, profile_id, form.days(), current_user, expected_version=version
    )


def _token_done(form: f.TokenForm, profile: Profile, back: str | None) -> Response:
    """Where the token dialog goes once done: on Edit profile (htmx) the page stays, with what
    the admin typed, and only its token part changes; else the page it was opened from."""
    status = services.token_status(profile)
    what = "was extended: " if form.extending() else "now " if form.setting_expiry() else ""
    message = f"The token of “{profile.name}” {what or 'was refreshed: '}{status}."
    if back == "edit" and is_htmx():
        response = render(
            "profiles/_token_edit_oob.html",
            "profiles/_token_edit_oob.html",
            profile=profile,
            summary=_summary(profile),
            original=json.dumps(services.edit_snapshot(profile), default=str),
        )
        return trigger(with_flash(response, message, "success"), "kme:dialog-done")
    flash(message, "success")
    if back == "edit":
        return redirect(url_for("profiles.edit", profile_id=profile.id))
    if back == "overview":  # Extend from the Overview's Needs attention
        return redirect(url_for("overview.index"))
    return dialogs.to_profile(profile.id)


@bp.post("/<int:profile_id>/token/reveal")
def reveal_token(profile_id: int):
    """Reveal: the token in full in place of its masked form (an admin's, audited each time)."""
    token = services.reveal_token(db.session, profile_id, current_user)
    db.session.commit()
    response = render(
        "profiles/token_page.html",
        "profiles/_token_reveal.html",
        profile=db.session.get(Profile, profile_id),
        revealed=token,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<int:profile_id>/token")
def token_dialog(profile_id: int):
    """Refresh Token: a new token (7..999 days or Never expires), Extend the current one, or
    Set expiry date on one that never expires. From Edit profile, `version` is the form's."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = _token_form(profile, request.args.get("version"))
    return _token_dialog(profile, form, request.args.get("back"))


@bp.post("/<int:profile_id>/token")
def token(profile_id: int):
    """Refresh (once confirmed), Extend or Set expiry date of the profile's token."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.TokenForm()
    back = request.form.get("back")
    if form.asks_confirmation() and form.validate_on_submit():
        return _token_dialog(profile, form, back, confirm=True)
    return dialogs.submit(
        form,
        lambda: _renew_token(form, profile_id),
        lambda updated: _token_done(form, updated, back),
        lambda code: _token_dialog(db.session.get(Profile, profile_id), form, back, code),
        fields={"token_expiry_days": "expiry_days"},
    )


@bp.get("/<int:profile_id>/user")
def user_dialog(profile_id: int):
    """Change Associate User: search, select, Apply."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.UserForm(formdata=None, data={"end_user_id": str(profile.end_user_id or "")})
    _with_picker(form, profile.end_user_id)
    return dialogs.show("profiles/_user.html", profile, form)


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
        return dialogs.to_profile(profile_id)

    return dialogs.submit(
        form,
        action,
        done,
        lambda code: dialogs.show("profiles/_user.html", profile, form, code=code),
    )


@bp.get("/<int:profile_id>/configuration")
def configuration_dialog(profile_id: int):
    """Modify Configuration: the three sections, then Update."""
    profile = services.get_profile_or_404(db.session, profile_id)
    data = {"version": profile.version, **f.form_data_from_config(profile.config or {})}
    form = f.ConfigurationForm(formdata=None, data=data)
    return dialogs.show("profiles/_configuration.html", profile, form)


@bp.post("/<int:profile_id>/configuration")
def configuration(profile_id: int):
    """Update the profile's configuration (KME gets it through the outbox)."""
    profile = services.get_profile_or_404(db.session, profile_id)
    form = f.ConfigurationForm()

    def action() -> Profile:
        data = {"config": form.config(), "secrets": form.secrets()}
        return services.update_profile(
            db.session, profile_id, data, form.version.data, current_user
        )

    def done(updated: Profile):
        flash(f"The configuration of “{updated.name}” was updated.", "success")
        return dialogs.to_profile(profile_id)

    def again(code: int):
        return dialogs.show("profiles/_configuration.html", profile, form, code=code)

    return dialogs.submit(form, action, done, again, fields=f.PROFILE_FIELDS)
