"""Who may reach what, and the headers every answer carries.

Every URL rule requires sign-in except the public endpoints below; a viewer may look but not
change anything; text with NUL characters is refused before any view sees it; and every
answer, the enrollment lane's included (kmeweb.enroll.lane), carries the security headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    has_app_context,
    redirect,
    request,
    url_for,
)
from flask_login import current_user

from kmeweb.auth.models import AdminUser
from kmeweb.extensions import db, login_manager
from kmeweb.extensions import htmx as htmx_ext
from kmeweb.htmx import current_page_path, is_htmx, sign_in_again
from kmeweb.ids import parse_id

# Endpoints reachable without signing in; every other URL rule requires login.
# /healthz, /readyz and /metrics (which checks its own bearer token) are kmeweb.ops.PUBLIC.
PUBLIC_ENDPOINTS = {
    "auth.login",
    "auth.login_post",
    "auth.oidc_start",
    "auth.oidc_callback",
    "static",
    "favicon",
    "ops.healthz",
    "ops.readyz",
    "ops.metrics",
    # The one-time set-password link (kmeweb.auth.account_views): its token is the credential.
    "accounts.set_password",
    "accounts.set_password_post",
}
PUBLIC_BLUEPRINTS = {"enroll"}
# Blueprints only admins may reach, reading included (their menu entries are hidden from
# viewers too): Admin › Accounts lists every account and how it signs in.
ADMIN_ONLY_BLUEPRINTS = {"accounts"}
# Blueprints that check a bearer token of their own (kmeweb.api.auth) instead of a session:
# a console session cookie never authorises them.
TOKEN_BLUEPRINTS = {"api"}
# State changes a viewer may still make: its own session, and API tokens of its own (the
# apitokens services hold a viewer to read scopes, to personal tokens and to its own tokens).
VIEWER_WRITABLE = {"auth.logout", "apitokens.create", "apitokens.revoke"}

FORM_MIMETYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}

# Scripts, styles and images only from this origin: no inline script, no style="" and no
# <style> in templates (htmx's own indicator <style> is off in base.html), no eval.
# data: images are Bootstrap's CSS icons (select arrow, checkbox tick, navbar toggler).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def init_sign_in(app: Flask) -> None:
    """Flask-Login: the account a session or remember-me cookie names, and where a request
    that needs one and has none is sent."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_sign_in_first)


def _load_user(alternative_id: str) -> AdminUser | None:
    """The account of a session or remember-me cookie, while its session token is current."""
    raw_id, _, token = alternative_id.partition(".")
    user_id = parse_id(raw_id)
    if user_id is None or not token:
        return None
    user = db.session.get(AdminUser, user_id)
    if user is None or not user.active or not user.matches_session(token):
        return None
    return user


def _sign_in_first():
    """htmx gets 401 + HX-Redirect (the whole page goes to sign-in); a page, a redirect."""
    if is_htmx() or htmx_ext.boosted:
        return sign_in_again(url_for("auth.login", next=current_page_path()))
    flash(login_manager.login_message, login_manager.login_message_category)
    next_path = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=next_path))


def init_app(app: Flask) -> None:
    """The checks before every request (NUL bytes, sign-in, role) and the headers after it."""
    app.before_request(_refuse_nul_bytes)
    app.before_request(_require_login_and_role)
    app.after_request(security_headers)


def content_security_policy(config: Mapping[str, Any]) -> str:
    """The CSP of this console: with an identity provider, `form-action` also allows its
    origin, because Sign out (a form POST) ends in a redirect to the provider's end-session
    page and browsers hold redirects of a form to `form-action` too."""
    issuer = config.get("OIDC_ISSUER")
    if not issuer:
        return CONTENT_SECURITY_POLICY
    parts = urlsplit(issuer)
    return CONTENT_SECURITY_POLICY.replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}"
    )


def security_header_pairs() -> list[tuple[str, str]]:
    """The headers every answer carries, as (name, value) pairs (the enrollment lane writes
    them itself)."""
    policy = (
        content_security_policy(current_app.config)
        if has_app_context()
        else CONTENT_SECURITY_POLICY
    )
    return [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Content-Security-Policy", policy),
    ]


def security_headers(response: Response) -> Response:
    """The headers every answer carries, unless the answer set its own (after_request)."""
    for name, value in security_header_pairs():
        response.headers.setdefault(name, value)
    return response


def _has_nul(pairs) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in pairs)


def _refuse_nul_bytes() -> None:
    """NUL in text is never meant, and PostgreSQL refuses it: a 400, not a 500."""
    if "\x00" in request.path or _has_nul(request.args.items(multi=True)):
        abort(400, "Text may not contain NUL characters.")
    if request.method != "GET" and request.mimetype in FORM_MIMETYPES:
        if _has_nul(request.form.items(multi=True)):
            abort(400, "Text may not contain NUL characters.")


def _require_login_and_role():
    endpoint = request.endpoint
    if endpoint is None:
        return None  # unknown URL: the 404 handler answers
    if endpoint in PUBLIC_ENDPOINTS or request.blueprint in PUBLIC_BLUEPRINTS:
        return None
    if request.blueprint in TOKEN_BLUEPRINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if request.blueprint in ADMIN_ONLY_BLUEPRINTS and not current_user.can_write:
        abort(403, "Only an admin can see or change this.")
    if request.method not in ("GET", "HEAD", "OPTIONS") and endpoint not in VIEWER_WRITABLE:
        if not current_user.can_write:
            abort(403, "Your role can look but not change anything.")
    return None
