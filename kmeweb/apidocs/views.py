"""API reference: every route of the JSON API, read from its OpenAPI document, rendered on
the server (no script); and the document as a download. Any signed-in role may read them."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

from kmeweb.api.docs import document
from kmeweb.apidocs import reference
from kmeweb.errors import PROBLEM_CODES

bp = Blueprint("apidocs", __name__)


@bp.get("/api-docs")
def index():
    return render_template(
        "apidocs/index.html",
        ref=reference.build(document(), PROBLEM_CODES),
        prose=reference.prose,
        inline=reference.inline,
        rate_limit=current_app.config.get("API_RATE_LIMIT"),
    )


@bp.get("/api-docs/openapi.json")
def openapi():
    """The same document /api/v1/openapi.json answers a token, for a signed-in person."""
    response = jsonify(document())
    response.headers["Content-Disposition"] = "attachment; filename=openapi.json"
    return response
