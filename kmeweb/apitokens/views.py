"""Admin › API tokens: create a personal token or (admins) a service client, see each token's
scopes, expiry and last use, revoke."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from kmeweb.apitokens import services
from kmeweb.extensions import db

bp = Blueprint("apitokens", __name__, url_prefix="/admin/api-tokens")


@bp.get("/")
def index():
    tokens = db.session.scalars(services.visible_tokens_query(current_user)).all()
    return render_template("apitokens/index.html", tokens=tokens)
