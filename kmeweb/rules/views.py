"""Admin › Routing rules: the rules in the order they are tried (reorder with Up / Down, or
by dragging them with static/js/rules.js), a rule's editor with its preview (Test before
saving), Delete as a form dialog, and Apply rules to existing devices (the counts first, then
an operation whose progress shows on the list).

Saving a rule moves no device; the rules live in kmeweb.rules.services and, for applying
them, kmeweb.integration.routing. A viewer sees everything read-only (kmeweb.security refuses
their POSTs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, flash, render_template, request, url_for
from flask_login import current_user

from kmeweb import dialogs
from kmeweb.directory import services as directory
from kmeweb.directory.models import EndUser
from kmeweb.errors import Conflict, PermissionDenied, ValidationError
from kmeweb.extensions import db
from kmeweb.htmx import is_htmx, redirect, render, with_flash
from kmeweb.ids import parse_id
from kmeweb.integration import routing
from kmeweb.operations.models import Operation
from kmeweb.rules import services
from kmeweb.rules.forms import (
    NO_PROFILE,
    USER_CHOICES,
    ApplyForm,
    ConfirmForm,
    OrderForm,
    RuleForm,
    chosen_user_id,
    user_choices,
)
from kmeweb.rules.models import RoutingRule, RuleAction

bp = Blueprint("rules", __name__, url_prefix="/admin/rules")

LIST_PAGE = "rules/index.html"
LIST = "rules/_list.html"
EDITOR = "rules/editor.html"
EDITOR_FORM = "rules/_editor.html"
PREVIEW = "rules/_preview.html"
DIALOG_PAGE = "rules/dialog_page.html"
DELETE = "rules/_delete.html"
APPLY_PAGE = "rules/apply.html"
SAVED_NOTE = "Saving changes no device already here; use Apply rules to existing devices."


@bp.context_processor
def _names() -> dict[str, Any]:
    return {
        "RuleAction": RuleAction,
        "saved_note": SAVED_NOTE,
        "identifiers_file_max": services.IDENTIFIERS_FILE_MAX,
        "no_profile": NO_PROFILE,
    }


def _list(code: int = 200, **context: Any) -> Response:
    """The rules page (htmx: the list alone), with the order it shows for reordering."""
    views = services.list_described(db.session)
    users = directory.display_names(db.session, [v.rule.end_user_id for v in views])
    order = ",".join(str(i) for i in services.order_of(v.rule for v in views))
    return render(LIST_PAGE, LIST, code=code, views=views, users=users, order=order, **context)


@bp.get("/")
def index():
    """The rules in the order they are tried, the catch-all last (`?op=<id>`: the progress
    of Apply rules to existing devices)."""
    operation_id = parse_id(request.args.get("op"))
    op = db.session.get(Operation, operation_id) if operation_id is not None else None
    response = _list(op=op)
    db.session.commit()  # the catch-all and the Default Profile, created on first view
    return response


def _reordered(run: Callable[[], Any], anchor: str = "") -> Response:
    """Save a new order; a stale page (409) or a bad order (422) shows the list as it is now
    with the reason, and a Reload button."""
    try:
        run()
    except (Conflict, ValidationError) as err:
        db.session.rollback()
        return _list(code=err.status, error=err.message)
    db.session.commit()
    message = "The new order of the rules was saved."
    if is_htmx():  # dragged: the list in its new order, in place
        return with_flash(_list(), message, "success")
    flash(message, "success")
    return redirect(url_for("rules.index") + anchor)


@bp.post("/<int:rule_id>/move")
def move(rule_id: int):
    """Up or Down: one place, as a plain form post (no JavaScript needed)."""
    form = OrderForm()
    if not form.validate_on_submit():
        abort(400)
    expected = form.expected_order.data
    direction = form.direction.data or ""
    return _reordered(
        lambda: services.move_rule(db.session, rule_id, direction, current_user, expected),
        f"#rule-{rule_id}",
    )


@bp.post("/order")
def reorder():
    """The whole order at once (after a drag and drop)."""
    form = OrderForm()
    if not form.validate_on_submit():
        abort(400)
    order, expected = form.order_ids(), form.expected_order.data
    return _reordered(lambda: services.set_order(db.session, order, current_user, expected))


def _with_choices(form: RuleForm) -> RuleForm:
    chosen_id = chosen_user_id(form)
    chosen = db.session.get(EndUser, chosen_id) if chosen_id is not None else None
    matches = directory.search_users(db.session, "", limit=USER_CHOICES)
    return form.with_choices(
        services.reseller_choices(db.session),
        services.profile_choices(db.session),
        user_choices(chosen, matches),
    )


def _preview(form: RuleForm, rule: RoutingRule | None) -> dict[str, Any]:
    """What the rule as the form has it would match now, or why it cannot say yet (a rule
    without any condition yet: it is being written, nothing is wrong)."""
    try:
        return {"result": services.preview_rule(db.session, form.rule_data(), rule)}
    except ValidationError as err:
        if {e.field for e in err.each()} == {"conditions"}:
            return {"no_condition": True}
        labels = {name: field.label.text for name, field in form._fields.items()}
        return {"errors": [(labels.get(e.field or "", ""), e.message) for e in err.each()]}


def _editor(
    form: RuleForm, rule: RoutingRule | None, code: int = 200, partial: str = EDITOR_FORM
) -> Response:
    """The rule editor (htmx: `partial`), with the preview of what it has now."""
    _with_choices(form)
    preview = _preview(form, rule)
    return render(EDITOR, partial, code=code, form=form, rule=rule, preview=preview)


@bp.get("/new")
def new():
    """Add rule (`?reseller_id=` chooses that reseller already, from its page)."""
    if not current_user.can_write:
        raise PermissionDenied("Your role can look but not change anything.")
    reseller_id = parse_id(request.args.get("reseller_id"))
    data = {
        "reseller_ids": [str(reseller_id)] if reseller_id is not None else [],
        "action": RuleAction.HOLD.value,
        "profile_id": services.DEFAULT_CHOICE,
    }
    return _editor(RuleForm(formdata=None, data=data), None)


def _save(form: RuleForm, rule: RoutingRule | None, action: Callable[[], RoutingRule]) -> Response:
    """Save the editor's rule; its errors next to their fields (422), a stale version or
    another refusal above them (409)."""
    valid = form.validate_on_submit()
    merged = form.merge_file()  # the list keeps the file's identifiers either way
    if not (valid and merged):
        return _editor(form, rule, 422)
    try:
        saved = action()
    except (ValidationError, Conflict) as err:
        db.session.rollback()
        if isinstance(err, ValidationError):
            form.attach(err)
        else:
            form.form_errors.append(err.message)
        return _editor(form, rule, err.status)
    db.session.commit()
    flash(f"Rule “{saved.name}” was saved. {SAVED_NOTE}", "success")
    return redirect(url_for("rules.index") + f"#rule-{saved.id}")


@bp.post("/new")
def create():
    """Save a new rule, just before the last one."""
    form = RuleForm()
    return _save(
        form, None, lambda: services.create_rule(db.session, form.rule_data(), current_user)
    )


@bp.get("/<int:rule_id>")
def edit(rule_id: int):
    """A rule's editor (read-only for a viewer), with what it matches now."""
    rule = services.get_rule_or_404(db.session, rule_id)
    return _editor(RuleForm.of(rule), rule)


@bp.post("/<int:rule_id>")
def update(rule_id: int):
    """Save an edit: 409 when someone saved the rule since the editor opened."""
    rule = services.get_rule_or_404(db.session, rule_id)
    form = RuleForm()

    def action() -> RoutingRule:
        data, version = form.rule_data(), form.version.data
        return services.update_rule(db.session, rule_id, data, current_user, version)

    return _save(form, rule, action)


@bp.post("/preview")
def preview():
    """Test before saving: what the rule as typed would match now; htmx gets the preview
    alone, the Preview button (no JavaScript) the editor again with it."""
    rule_id = parse_id(request.form.get("rule_id"))
    rule = services.get_rule_or_404(db.session, rule_id) if rule_id is not None else None
    form = RuleForm()
    form.merge_file()
    return _editor(form, rule, partial=PREVIEW)


def _dialog(rule: RoutingRule, form: ConfirmForm, code: int = 200) -> Response:
    """The Delete dialog (htmx, into #form-dialog-content), else a page holding it."""
    modal = is_htmx()
    return render(DIALOG_PAGE, DELETE, code, dialog=DELETE, modal=modal, rule=rule, form=form)


@bp.get("/<int:rule_id>/delete")
def delete_dialog(rule_id: int):
    """Delete: what happens, before anything does."""
    rule = services.get_rule_or_404(db.session, rule_id)
    return _dialog(rule, ConfirmForm(formdata=None, data={"version": rule.version}))


@bp.post("/<int:rule_id>/delete")
def delete(rule_id: int):
    """Delete the rule (never the last one); the devices it placed stay where they are."""
    rule = services.get_rule_or_404(db.session, rule_id)
    form = ConfirmForm()

    def done(name: str) -> Response:
        flash(f"Rule “{name}” was deleted; the devices it placed stay where they are.", "success")
        return redirect(url_for("rules.index"))

    return dialogs.submit(
        form,
        lambda: services.delete_rule(db.session, rule_id, current_user, form.version.data),
        done,
        lambda code: _dialog(db.session.get(RoutingRule, rule_id) or rule, form, code),
    )


def _apply_page(
    form: ApplyForm | None = None, code: int = 200, error: str | None = None
) -> tuple[str, int]:
    plan = routing.apply_plan(db.session)
    form = form or ApplyForm(formdata=None)
    form.expected_changes.data = str(plan.changes)
    return render_template(APPLY_PAGE, plan=plan, form=form, error=error), code


@bp.get("/apply")
def confirm_apply():
    """Apply rules to existing devices: what would change, rule by rule, before anything
    does."""
    return _apply_page()


@bp.post("/apply")
def apply():
    """Confirm: start the operation, whose progress shows on the rules page; 409 with the
    counts of now when they are not those the admin saw."""
    form = ApplyForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        operation = routing.start_apply(db.session, current_user, form.expected())
    except Conflict as err:
        db.session.rollback()
        return _apply_page(form, 409, err.message)
    db.session.commit()
    flash(f"“{operation.label}” started: its progress shows below.", "success")
    return redirect(url_for("rules.index", op=operation.id))
