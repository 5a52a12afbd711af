from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    abort,
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

from kmeweb.alerts import jobs as alert_jobs
from kmeweb.auth import idp, oidc, services
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


def _login_page(form: LoginForm, next_url: str | None, status: int = 200, refusal: str = ""):
    """The sign-in page: the password form, and "Sign in with <provider>" when one is set up
    (with one line saying so when it does not answer)."""
    provider = oidc.settings()
    down = provider.enabled and not oidc.provider_up()
    page = render_template(
        "auth/login.html", form=form, next=next_url, provider=provider, down=down, refusal=refusal
    )
    return page, status


def _start_session(user, remember: bool = False) -> None:
    """A fresh session: nothing from before sign-in (CSRF token included) carries over."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    login_user(user, remember=remember)


@bp.get("/login")
def login():
    """Show the sign-in form."""
    if current_user.is_authenticated:
        return redirect(url_for("overview.index"))
    return _login_page(LoginForm(), request.args.get("next"))


@bp.post("/login")
@limiter.limit(_account_limit, key_func=_login_account_key, scope="login-account")
@limiter.limit(_ip_limit, key_func=_login_ip_key, scope="login-ip")
def login_post():
    """Authenticate; 422 with a field-neutral message on failure."""
    form = LoginForm()
    next_url = request.form.get("next")
    if not form.validate_on_submit():
        return _login_page(form, next_url, 422)
    provider = oidc.settings()
    try:
        user = services.authenticate(
            db.session,
            form.email.data,
            form.password.data,
            request.remote_addr,
            idp_only=provider.only,
            idp_name=provider.name,
        )
    except services.PasswordSignInOff as exc:
        db.session.commit()
        return _login_page(form, next_url, exc.status, refusal=exc.message)
    db.session.commit()
    if user is None:
        log.info("sign-in refused")
        form.password.errors.append("Email or password is not correct.")
        return _login_page(form, next_url, 422)
    if user.break_glass:
        alert_jobs.evaluate_soon()
    _start_session(user, remember=form.remember.data)
    log.info("sign-in succeeded")  # the log line carries the user id and request id
    return redirect(safe_next(next_url), code=303)


@bp.get("/oidc")
@limiter.limit(_ip_limit, key_func=_login_ip_key, scope="login-ip")
def oidc_start():
    """Send the browser to the identity provider's sign-in page (404 when none is set up)."""
    if not oidc.settings().enabled:
        abort(404)
    try:
        return oidc.redirect_to_provider(url_for("auth.oidc_callback", _external=True))
    except oidc.ProviderUnavailable:
        flash(f"{oidc.settings().name} is not answering: try again in a few minutes.", "danger")
        return redirect(url_for("auth.login"), code=303)


@bp.get("/oidc/callback")
@limiter.limit(_ip_limit, key_func=_login_ip_key, scope="login-ip")
def oidc_callback():
    """The provider's answer: sign in with the account its checked claims name, or say why not."""
    provider, email = oidc.settings(), ""
    if not provider.enabled:
        abort(404)
    try:
        claims, id_token = oidc.claims_from_callback()
        email = str(claims.get("email") or "")
        user = idp.sign_in(db.session, provider, claims, request.remote_addr)
    except (oidc.TokenRefused, oidc.ProviderUnavailable, idp.SignInRefused) as exc:
        reason = exc.message if isinstance(exc, idp.SignInRefused) else str(exc)
        if not isinstance(exc, idp.SignInRefused):
            idp.refuse(db.session, email, reason, request.remote_addr)
        db.session.commit()
        return _login_page(LoginForm(), None, 403, refusal=f"Sign-in refused: {reason}")
    db.session.commit()
    _start_session(user)
    session[oidc.ID_TOKEN_KEY] = id_token
    return redirect(url_for("overview.index"), code=303)


@bp.post("/logout")
@login_required
def logout():
    """Sign out and record it; at the provider too when the session came from it."""
    provider_logout = oidc.logout_url(url_for("auth.login", _external=True))
    services.record_logout(db.session, current_user, request.remote_addr)
    db.session.commit()
    logout_user()
    session.pop(oidc.ID_TOKEN_KEY, None)
    flash("You have been signed out.", "info")
    return redirect(provider_logout or url_for("auth.login"), code=303)
