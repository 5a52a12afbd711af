"""DomainError family and the central handlers that map them to pages or fragments."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger("kmeweb")


class DomainError(Exception):
    """A rule of the domain refused the request; `status` is the HTTP answer."""

    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(DomainError):
    status = 422


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    """A stale version or a rule that the current state forbids."""

    status = 409


class PermissionDenied(DomainError):
    status = 403


def request_id() -> str:
    rid = getattr(g, "request_id", None)
    if rid is None:
        rid = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:12]
        g.request_id = rid
    return rid


def _wants_json() -> bool:
    return request.path.startswith("/enroll") or (
        request.accept_mimetypes.best == "application/json"
    )


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _echo_request_id(response):
        response.headers["X-Request-Id"] = request_id()
        return response

    @app.errorhandler(DomainError)
    def _domain_error(err: DomainError):
        if _wants_json():
            return jsonify(error=err.message), err.status
        from kmeweb.htmx import flash_fragment, is_htmx

        if is_htmx():
            # Only the out-of-band flash is swapped in; the request's target stays as it was.
            return flash_fragment(err.message, "error"), err.status, {"HX-Reswap": "none"}
        return render_template(
            "errors/error.html", status=err.status, message=err.message
        ), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if _wants_json():
            return jsonify(error=err.name), err.code
        template = "errors/404.html" if err.code == 404 else "errors/error.html"
        return render_template(
            template, status=err.code, message=err.description, title=err.name
        ), err.code

    @app.errorhandler(Exception)
    def _server_error(err: Exception):
        if isinstance(err, HTTPException):
            return _http_error(err)
        log.exception("unhandled error request_id=%s path=%s", request_id(), request.path)
        if _wants_json():
            return jsonify(error="internal error", request_id=request_id()), 500
        return render_template("errors/500.html", request_id=request_id()), 500
