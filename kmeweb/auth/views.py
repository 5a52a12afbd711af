from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from kmeweb.auth import services
from kmeweb.auth.forms import LoginForm
from kmeweb.extensions import db, limiter

bp = Blueprint("auth", __name__, url_prefix="/auth")


def _login_account_key() -> str:
    email = services.normalize_email(request.form.get("email", ""))
    return f"account:{email}"


def _login_ip_key() -> str:
    return f"ip:{request.remote_addr}"


def _account_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _ip_limit() -> str:
    return current_app.config["LOGIN_IP_RATE_LIMIT"]


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("home")


@bp.get("/login")
def login():
    """Show the sign-in form."""
    if current_user.is_authenticated:
        return redirect(url_for("home"))
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
            login_user(user, remember=form.remember.data)
            return redirect(_safe_next(next_url), code=303)
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
