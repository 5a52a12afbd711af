"""Admin › API tokens: create a personal token or (admins) a service client, see each token's
scopes, expiry and last use, revoke.

New token and Revoke are form dialogs (templates/_macros/dialogs.html) and pages of their own
without JavaScript. The secret of a new token is in one answer only, marked no-store: only
its hash is kept, so it can never be shown again. A viewer may create and revoke tokens of
their own that only read (kmeweb.security.VIEWER_WRITABLE; the services hold the rules).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, flash, request, url_for
from flask_login import current_user

from kmeweb import dialogs
from kmeweb.apitokens import services
from kmeweb.apitokens.forms import NewTokenForm, RevokeForm, TokenFilterForm
from kmeweb.apitokens.models import ApiToken, Scope, TokenKind
from kmeweb.apitokens.services import TokenState
from kmeweb.extensions import db
from kmeweb.htmx import is_htmx, redirect, render
from kmeweb.pagination import page_args, paginate

bp = Blueprint("apitokens", __name__, url_prefix="/admin/api-tokens")

DIALOG_PAGE = "apitokens/dialog_page.html"
# The call a new token's curl example makes: a list its first read scope opens (paths of the
# JSON API, kmeweb.api), else the OpenAPI document, which any token may read.
EXAMPLE_CALLS = {
    Scope.OPERATIONS_READ: "/operations",
    Scope.DEVICES_READ: "/devices?limit=10",
    Scope.PROFILES_READ: "/profiles",
    Scope.UPLOADS_READ: "/uploads",
    Scope.RULES_READ: "/rules",
    Scope.INTEGRATION_READ: "/integration",
    Scope.USERS_READ: "/users",
    Scope.AUDIT_READ: "/audit",
}


@bp.context_processor
def _api_links() -> dict[str, Any]:
    """Where the API lives, for the examples, and its reference page once there is one."""
    docs = "apidocs.index" in current_app.view_functions
    base = current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
    return {
        "api_root": base + url_for("api.openapi").removesuffix("/openapi.json"),
        "api_docs_url": url_for("apidocs.index") if docs else None,
        "TokenState": TokenState,
        "kind_labels": TokenKind.labels(),
    }


def example_call(token: ApiToken) -> str:
    """The path (below the API root) of the curl example shown with a new token."""
    return next((EXAMPLE_CALLS[s] for s in EXAMPLE_CALLS if s in token.scopes), "/openapi.json")


def _dialog(partial: str, crumb: str, code: int = 200, **context: Any) -> Response:
    """A dialog partial for htmx (into #form-dialog-content), else the page holding it."""
    return render(
        DIALOG_PAGE, partial, code=code, dialog=partial, crumb=crumb, modal=is_htmx(), **context
    )


@bp.get("/")
def index():
    """The tokens the signed-in person may see (an admin every one), newest first."""
    form = TokenFilterForm()
    valid = form.validate_query()
    page, per_page = page_args(current_app.config.get("PAGE_SIZE", 50))
    search = None if form.q.errors else form.q.data
    stmt = services.visible_tokens_query(current_user, search)
    tokens = paginate(db.session, stmt, page, per_page)
    return render(
        "apitokens/index.html",
        "apitokens/_list.html",
        code=200 if valid else 422,
        form=form,
        tokens=tokens,
        rows=services.describe_tokens(db.session, tokens.items),
    )


@bp.get("/new")
def new():
    """New token: name, kind, scopes, expiry."""
    return _dialog(
        "apitokens/_new.html", "New token", form=NewTokenForm(formdata=None).offer(current_user)
    )


def _created(new_token: services.NewToken) -> Response:
    """The secret, this once: never cached, never stored (only its hash is)."""
    response = _dialog(
        "apitokens/_created.html",
        "New token",
        token=new_token.token,
        secret=new_token.secret,
        example=example_call(new_token.token),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/new")
def create():
    """Create the token and show its secret once; refusals show inside the dialog."""
    form = NewTokenForm().offer(current_user)
    return dialogs.submit(
        form,
        lambda: services.create_token(
            db.session,
            current_user,
            form.name.data,
            form.scopes.data or [],
            form.expires_in_days.data,
            service=form.service,
        ),
        _created,
        lambda code: _dialog("apitokens/_new.html", "New token", code, form=form),
    )


@bp.get("/<int:token_id>/revoke")
def revoke_dialog(token_id: int):
    """Revoke: what stops working is said before anything happens."""
    token = services.get_visible_token(db.session, current_user, token_id)
    return _dialog(
        "apitokens/_revoke.html", "Revoke token", token=token, form=RevokeForm(formdata=None)
    )


@bp.post("/<int:token_id>/revoke")
def revoke(token_id: int):
    """Revoke at once: the next request with the token is refused."""
    token = services.get_visible_token(db.session, current_user, token_id)
    form = RevokeForm()

    def done(revoked: ApiToken) -> Response:
        flash(f"The token “{revoked.name}” was revoked: it no longer works.", "success")
        return redirect(url_for("apitokens.index"))

    return dialogs.submit(
        form,
        lambda: services.revoke_token(db.session, current_user, token_id),
        done,
        lambda code: _dialog(
            "apitokens/_revoke.html", "Revoke token", code, token=token, form=form
        ),
    )
