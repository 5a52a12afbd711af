"""Admin › Routing rules: the rules in order, a rule's editor with its preview, and Apply
rules to existing devices. (First cut: the list; the editor follows.)"""

from __future__ import annotations

from flask import Blueprint, render_template

from kmeweb.extensions import db
from kmeweb.rules import services

bp = Blueprint("rules", __name__, url_prefix="/admin/rules")


@bp.get("/")
def index():
    """The rules in the order they are tried, the catch-all last."""
    rules = services.list_rules(db.session)
    db.session.commit()  # the catch-all, created on first view
    return render_template("rules/index.html", views=services.describe(db.session, rules))


@bp.get("/new")
def new():
    """A new rule (placeholder until the editor lands)."""
    return index()


@bp.get("/<int:rule_id>")
def edit(rule_id: int):
    """A rule's editor (placeholder until the editor lands)."""
    services.get_rule_or_404(db.session, rule_id)
    return index()
