from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from kmeweb.auth import services
from kmeweb.auth.forms import LoginForm
from kmeweb.extensions import db, limiter

bp = Blueprint("auth", __name__, url_prefix="/auth")
log = logging.getLogger("kmeweb.auth")


def _login_account_key() -> str:
    email = services.normalize_email(request.form.get("email", ""))
    return f"account:{email}"


def _login_ip_key() -> str:
    return f"ip:{request.remote_addr}"


def _account_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _ip_limit() -> str:
    return current_app.config["LOGIN_IP_RATE_LIMIT"]


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else the console's home.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    `/%09/evil.example` or `/\\evil.example` would leave the site: anything with a control
    character or backslash (encoded or not), or a scheme or host, lands on home.
    """
    home = url_for("overview.index")
    if not target or len(target) > 2000:
        return home
    decoded = target
    for _ in range(3):  # doubly encoded tricks too
        decoded = unquote(decoded)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded) or "\\" in decoded:
        return home
    parts = urlsplit(decoded)
    if parts.scheme or parts.netloc or not decoded.startswith("/") or decoded.startswith("//"):
        return home
    return target


@bp.get("/login")
def login():
    """Show the sign-in form."""
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    return render_template("auth/login.html", form=LoginForm(), next=request.args.get("next"))


@bp.post("/login")
@limiter.limit(_account_limit, key_func=_login_account_key, scope="login-account")
@limiter.limit(_ip_limit, key_func=_login_ip_key, scope="login-ip")
def login_post():
    """Authenticate; 422 with a field-neutral message on failure."""
    form = LoginForm()
    next_url = request.form.get("next")
    if form.validate_on_submit():
        user = services.authenticate(
            db.session, form.email.data, form.password.data, request.remote_addr
        )
        db.session.commit()
        if user is not None:
            # A fresh session: nothing from before sign-in (CSRF token included) carries over.
            session.clear()
            g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
            login_user(user, remember=form.remember.data)
            log.info("sign-in succeeded")  # the log line carries the user id and request id
            return redirect(safe_next(next_url), code=303)
        log.info("sign-in refused")
        form.password.errors.append("Email or password is not correct.")
    return render_template("auth/login.html", form=form, next=next_url), 422


@bp.post("/logout")
@login_required
def logout():
    """Sign out and record it."""
    services.record_logout(db.session, current_user, request.remote_addr)
    db.session.commit()
    logout_user()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"), code=303)
