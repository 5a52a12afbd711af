"""Admin › Accounts: every console account, Add account, and per account Change role,
Deactivate / Reactivate, Reset password, End sessions and break-glass; plus the public
set-password link page.

Admins only, reading included (kmeweb.security.ADMIN_ONLY_BLUEPRINTS): a viewer gets 403 and
no menu entry. Each action is a form dialog (templates/_macros/dialogs.html) that says what
will happen before anything does, and a page of its own without JavaScript (the row's Actions
menu is then a link to the account's page, which lists the same actions). A new link or
generated password is in one answer only, marked no-store: only a link's hash is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    make_response,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm

from kmeweb import dialogs
from kmeweb.auth import accounts
from kmeweb.auth.account_forms import (
    ROLE_LABELS,
    AccountFilterForm,
    BreakGlassForm,
    ConfirmForm,
    NewAccountForm,
    ResetPasswordForm,
    RoleForm,
    SetPasswordForm,
)
from kmeweb.auth.accounts import AccountStatus, Credential
from kmeweb.auth.models import AdminUser, SignIn
from kmeweb.errors import NotFound
from kmeweb.extensions import db, limiter
from kmeweb.forms import submit
from kmeweb.htmx import is_htmx, redirect, render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("accounts", __name__)
ROOT = "/admin/accounts"
DIALOG_PAGE = "accounts/dialog_page.html"
SET_PASSWORD_PAGE = "accounts/set_password.html"


@bp.context_processor
def _names() -> dict[str, Any]:
    return {
        "AccountStatus": AccountStatus,
        "SignIn": SignIn,
        "Credential": Credential,
        "account_status": accounts.account_status,
        "role_labels": ROLE_LABELS,
    }


def _dialog(partial: str, crumb: str, code: int = 200, **context: Any) -> Response:
    """A dialog partial for htmx (into #form-dialog-content), else the page holding it."""
    return render(
        DIALOG_PAGE, partial, code=code, dialog=partial, crumb=crumb, modal=is_htmx(), **context
    )


def _public(path: str) -> str:
    """`path` as the person will open it (on KMEWEB_PUBLIC_URL when set)."""
    base = current_app.config.get("PUBLIC_URL") or request.host_url
    return base.rstrip("/") + path


def _show_secret(account: AdminUser, secret: accounts.Secret, crumb: str) -> Response:
    """The link or password, this once: never cached, never stored readable."""
    link = url_for("accounts.set_password", token=secret.value)
    response = _dialog(
        "accounts/_secret.html",
        crumb,
        account=account,
        secret=secret,
        link=_public(link) if secret.kind == Credential.LINK else None,
        login_url=_public(url_for("auth.login")),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _back() -> Response:
    """To the list; to the overview for someone who just made themselves a viewer."""
    return redirect(url_for("accounts.index" if current_user.can_write else "overview.index"))


@bp.get(f"{ROOT}/")
def index():
    """Every console account: search by name or email, filter by status."""
    form = AccountFilterForm()
    valid = form.validate_query()
    page, per_page = page_args(current_app.config.get("PAGE_SIZE", 50))
    search = None if form.q.errors else form.q.data
    stmt = accounts.accounts_query(search, form.status.data)
    return render(
        "accounts/index.html",
        "accounts/_list.html",
        code=200 if valid else 422,
        form=form,
        accounts=paginate(db.session, stmt, page, per_page),
    )


@bp.get(f"{ROOT}/<int:account_id>")
def detail(account_id: int):
    """One account and what can be done with it (the Actions menu without JavaScript)."""
    account = accounts.get_account(db.session, account_id)
    return render_template("accounts/detail.html", account=account)


@bp.get(f"{ROOT}/new")
def new():
    """Add account: email, name, role, how it signs in."""
    return _dialog("accounts/_new.html", "Add account", form=NewAccountForm(formdata=None))


def _added(added: accounts.NewAccount) -> Response:
    if added.secret is None:
        email = added.account.email
        flash(f"{email} was added: they sign in with the identity provider.", "success")
        return redirect(url_for("accounts.index"))
    return _show_secret(added.account, added.secret, "Account added")


@bp.post(f"{ROOT}/new")
def create():
    """Add the account; its link or password is shown once, refusals inside the dialog."""
    form = NewAccountForm()
    return dialogs.submit(
        form,
        lambda: accounts.add_account(
            db.session,
            current_user,
            form.email.data,
            form.name.data,
            form.role.data,
            form.sign_in.data,
            form.credential.data,
        ),
        _added,
        lambda code: _dialog("accounts/_new.html", "Add account", code, form=form),
    )


def _ask(partial: str, crumb: str, account_id: int, form: FlaskForm) -> Response:
    """An action's dialog: what will happen, before anything does."""
    account = accounts.get_account(db.session, account_id)
    return _dialog(partial, crumb, account=account, form=form)


def _act(
    partial: str,
    crumb: str,
    account_id: int,
    form: FlaskForm,
    run: Callable[[AdminUser], Any],
    done: Callable[[AdminUser, Any], Response],
) -> Response:
    """Run an action on the account; a refusal shows inside its dialog (409, or 422)."""
    account = accounts.get_account(db.session, account_id)
    return dialogs.submit(
        form,
        lambda: run(account),
        lambda result: done(account, result),
        lambda code: _dialog(partial, crumb, code, account=account, form=form),
    )


def _said(message: str) -> Callable[[AdminUser, Any], Response]:
    """Flash `message` (with {email} filled in) and go back to the list."""

    def done(account: AdminUser, _result: Any) -> Response:
        flash(message.format(email=account.email), "success")
        return _back()

    return done


@bp.get(f"{ROOT}/<int:account_id>/role")
def role_dialog(account_id: int):
    """Change role: admin or viewer."""
    account = accounts.get_account(db.session, account_id)
    form = RoleForm(formdata=None, obj=account)
    return _dialog("accounts/_role.html", "Change role", account=account, form=form)


@bp.post(f"{ROOT}/<int:account_id>/role")
def change_role(account_id: int):
    """Save the role (the last active admin stays an admin: 409 inside the dialog)."""
    form = RoleForm()
    return _act(
        "accounts/_role.html",
        "Change role",
        account_id,
        form,
        lambda account: accounts.change_role(db.session, current_user, account, form.role.data),
        _role_changed,
    )


def _role_changed(account: AdminUser, _changed: bool) -> Response:
    flash(f"{account.email} is now {'an admin' if account.can_write else 'a viewer'}.", "success")
    return _back()


@bp.get(f"{ROOT}/<int:account_id>/deactivate")
def deactivate_dialog(account_id: int):
    """Deactivate: what stops is said first."""
    return _ask("accounts/_deactivate.html", "Deactivate", account_id, ConfirmForm(formdata=None))


@bp.post(f"{ROOT}/<int:account_id>/deactivate")
def deactivate(account_id: int):
    """Deactivate: its sessions end at once."""
    return _act(
        "accounts/_deactivate.html",
        "Deactivate",
        account_id,
        ConfirmForm(),
        lambda account: accounts.deactivate(db.session, current_user, account),
        _said("{email} is deactivated: its sessions have ended."),
    )


@bp.get(f"{ROOT}/<int:account_id>/activate")
def activate_dialog(account_id: int):
    """Reactivate."""
    return _ask("accounts/_activate.html", "Reactivate", account_id, ConfirmForm(formdata=None))


@bp.post(f"{ROOT}/<int:account_id>/activate")
def activate(account_id: int):
    """Reactivate: it signs in as before."""
    return _act(
        "accounts/_activate.html",
        "Reactivate",
        account_id,
        ConfirmForm(),
        lambda account: accounts.activate(db.session, current_user, account),
        _said("{email} is active again."),
    )


@bp.get(f"{ROOT}/<int:account_id>/end-sessions")
def end_sessions_dialog(account_id: int):
    """End sessions."""
    form = ConfirmForm(formdata=None)
    return _ask("accounts/_end_sessions.html", "End sessions", account_id, form)


@bp.post(f"{ROOT}/<int:account_id>/end-sessions")
def end_sessions(account_id: int):
    """End every session of the account, on every browser."""
    return _act(
        "accounts/_end_sessions.html",
        "End sessions",
        account_id,
        ConfirmForm(),
        lambda account: accounts.end_sessions(db.session, current_user, account),
        _said("Every session of {email} has ended."),
    )


@bp.get(f"{ROOT}/<int:account_id>/break-glass")
def break_glass_dialog(account_id: int):
    """Mark or unmark break-glass."""
    form = BreakGlassForm(formdata=None)
    return _ask("accounts/_break_glass.html", "Break-glass", account_id, form)


@bp.post(f"{ROOT}/<int:account_id>/break-glass")
def break_glass(account_id: int):
    """Mark or unmark (the form names the state wanted)."""
    form = BreakGlassForm()
    return _act(
        "accounts/_break_glass.html",
        "Break-glass",
        account_id,
        form,
        lambda account: accounts.set_break_glass(db.session, current_user, account, form.wanted),
        _said("{email} is break-glass." if form.wanted else "{email} is no longer break-glass."),
    )


@bp.get(f"{ROOT}/<int:account_id>/reset-password")
def reset_password_dialog(account_id: int):
    """Reset password: a new link or a generated password."""
    form = ResetPasswordForm(formdata=None)
    return _ask("accounts/_reset_password.html", "Reset password", account_id, form)


@bp.post(f"{ROOT}/<int:account_id>/reset-password")
def reset_password(account_id: int):
    """Reset: the old password stops, sessions end, the new link or password shows once."""
    form = ResetPasswordForm()
    return _act(
        "accounts/_reset_password.html",
        "Reset password",
        account_id,
        form,
        lambda account: accounts.reset_password(
            db.session, current_user, account, form.credential.data
        ),
        lambda account, secret: _show_secret(account, secret, "Password reset"),
    )


def _link_ip_key() -> str:
    return f"ip:{request.remote_addr}"


def _link_key() -> str:
    token = (request.view_args or {}).get("token", "")
    return f"link:{accounts.hash_link_token(token)}"


def _account_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _ip_limit() -> str:
    return current_app.config["LOGIN_IP_RATE_LIMIT"]


def _link_page(response: Response) -> Response:
    """The link is a secret: the page is never cached, and no Referer carries it anywhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _dead_link(err: NotFound) -> Response:
    """A link that does not work: why, and the way to sign-in (404)."""
    page = make_response(render_template(SET_PASSWORD_PAGE, dead=err.message), 404)
    return _link_page(page)


@bp.get("/auth/set-password/<token>")
def set_password(token: str):
    """The set-password link: choose a password (public; a dead link says why)."""
    try:
        account = accounts.account_for_link(db.session, token)
    except NotFound as err:
        return _dead_link(err)
    form = SetPasswordForm(formdata=None)
    page = render(SET_PASSWORD_PAGE, SET_PASSWORD_PAGE, form=form, account=account, token=token)
    return _link_page(page)


@bp.post("/auth/set-password/<token>")
@limiter.limit(_account_limit, key_func=_link_key, scope="set-password-link")
@limiter.limit(_ip_limit, key_func=_link_ip_key, scope="set-password-ip")
def set_password_post(token: str):
    """Save the password, use the link up, end the account's sessions, go to sign-in."""
    form = SetPasswordForm()

    def done(_account: AdminUser) -> Response:
        flash("Your password is set: sign in with it.", "success")
        return redirect(url_for("auth.login"))

    try:
        account = accounts.account_for_link(db.session, token)
        answer = submit(
            form,
            lambda: accounts.set_password_with_link(
                db.session, token, form.password.data or "", form.confirm.data or ""
            ),
            done,
            page=SET_PASSWORD_PAGE,
            partial=SET_PASSWORD_PAGE,
            account=account,
            token=token,
        )
    except NotFound as err:  # dead, or used by another request a moment ago
        db.session.rollback()
        return _dead_link(err)
    return _link_page(answer)
