"""DomainError family and the central handlers that map them to pages or fragments."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException

from kmeweb.extensions import db
from kmeweb.htmx import flash_fragment, is_htmx

log = logging.getLogger("kmeweb")
T = TypeVar("T")


class DomainError(Exception):
    """A rule of the domain refused the request; `status` is the HTTP answer."""

    status = 422
    code = "invalid"  # the API's stable name of this kind of refusal (problem+json `code`)

    def __init__(self, message: str, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def each(self) -> list[DomainError]:
        """Every refusal this error carries (one, except for ValidationErrors)."""
        return [self]


class ValidationError(DomainError):
    status = 422


class ValidationErrors(ValidationError):
    """Several fields refused at once, so that a form shows every message in one answer.
    `message` and `field` are the first one's; `each()` lists them all."""

    def __init__(self, errors: Sequence[ValidationError]) -> None:
        super().__init__(errors[0].message, errors[0].field)
        self.errors = list(errors)

    def each(self) -> list[DomainError]:
        return list(self.errors)


class ErrorCollector:
    """Runs independent checks and keeps every ValidationError instead of stopping at the
    first; `raise_any()` raises them together (the first message per field only)::

        errors = ErrorCollector()
        name = errors.check(validate_name, session, raw_name)  # None when refused
        days = errors.check(parse_expiry_days, raw_days)
        errors.raise_any()
    """

    def __init__(self) -> None:
        self.errors: list[ValidationError] = []

    def check(self, rule: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        try:
            return rule(*args, **kwargs)
        except ValidationError as err:
            self.errors.extend(e for e in err.each() if isinstance(e, ValidationError))
            return None

    def add(self, message: str, field: str | None = None) -> None:
        self.errors.append(ValidationError(message, field))

    def raise_any(self) -> None:
        """Raise what was found: the error itself when one, ValidationErrors when more."""
        seen: set[str | None] = set()
        found = []
        for err in self.errors:
            if err.field is None or err.field not in seen:
                seen.add(err.field)
                found.append(err)
        if len(found) == 1:
            raise found[0]
        if found:
            raise ValidationErrors(found)


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    """A stale version or a rule that the current state forbids."""

    status = 409
    code = "conflict"


class PermissionDenied(DomainError):
    status = 403
    code = "forbidden"


class ApiProblem(Exception):
    """An API answer that is not a rule of the domain: a missing or unknown token (401), a
    missing scope (403), a stale If-Match (412), too many requests (429), a body that does not
    match its schema (422). Rendered as problem+json (`problem`)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


# The API's stable `code` of each HTTP refusal that is not a DomainError.
HTTP_PROBLEM_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
}
# Every problem `code` the API answers, with what it means: the API reference's "Problem
# codes" (a problem's `type` links to its entry there). tests/api/test_openapi.py fails on a
# code used in kmeweb/ that is not listed here.
PROBLEM_CODES: dict[str, str] = {
    "bad_request": "The request could not be read, e.g. text with NUL characters (400).",
    "unauthorized": "No token was sent: send `Authorization: Bearer <token>` (401).",
    "invalid_token": (
        "The token is unknown, revoked or expired, or its owner's account is deactivated (401)."
    ),
    "forbidden": "The token's owner may not do this, e.g. a viewer's token and a write (403).",
    "insufficient_scope": (
        "The token lacks the scope the route needs; the route's reference names it (403)."
    ),
    "not_found": "No such item, or no such path (404).",
    "method_not_allowed": "The path exists but not with this method; see Allow (405).",
    "not_acceptable": "The answer cannot be given in a media type the request accepts (406).",
    "conflict": "The current state forbids the change, e.g. the item changed meanwhile (409).",
    "count_mismatch": (
        "An action by filter matched another number of devices than `expected_count`: "
        "nothing was done (409)."
    ),
    "idempotency_in_progress": (
        "A request with the same Idempotency-Key is still being answered; retry shortly (409)."
    ),
    "precondition_failed": (
        "The item changed since it was read (If-Match names an old ETag): read it again (412)."
    ),
    "too_large": "The request body is larger than the server accepts (413).",
    "unsupported_media_type": "The body's media type is not one the route reads (415).",
    "invalid": (
        "The request does not match its schema, or a rule refused it; `errors` names each "
        "field at fault (422)."
    ),
    "invalid_cursor": (
        "The cursor is not one this API gave out: use the previous page's `next_cursor` (422)."
    ),
    "idempotency_key_reused": (
        "This Idempotency-Key was used with another request: send a new key (422)."
    ),
    "rate_limited": "Too many requests for this token: wait for Retry-After seconds (429).",
    "internal_error": "Something went wrong on the server; it was logged with `request_id` (500).",
    "error": "Any other HTTP refusal: see `status` and `detail`.",
}
PROBLEM_MIMETYPE = "application/problem+json"
API_PREFIX = "/api/"


def is_api_request() -> bool:
    """A request to the JSON API: every refusal is answered as problem+json."""
    return request.path.startswith(API_PREFIX)


def problem(
    status: int,
    code: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem: `type` points at the code's entry in the API reference, `code` is
    stable for scripts, `errors` name the fields at fault."""
    body: dict[str, Any] = {
        "type": f"/api-docs#problem-{code}",
        "title": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else code,
        "status": status,
        "code": code,
        "detail": detail,
        "request_id": request_id(),
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    response.headers.update(headers or {})
    return response


def domain_problem(err: DomainError) -> Response:
    errors = [{"field": e.field, "message": e.message} for e in err.each() if e.field]
    return problem(err.status, err.code, err.message, errors)


REQUEST_ID_RE = re.compile(r"[A-Za-z0-9-]{1,64}")

# What a person sees in the flash area when an htmx request is refused.
HTMX_MESSAGES = {
    400: "The request was not understood; reload the page and try again.",
    401: "Your session has ended; sign in again.",
    403: "Your role can look but not change anything.",
    404: "That item no longer exists; reload the page.",
    405: "That action is not available here.",
    413: "That upload is too large.",
    429: "Too many attempts; wait a minute and try again.",
}
CSRF_MESSAGE = "Your session expired; reload the page."


def request_id(environ: dict[str, Any] | None = None) -> str:
    """This request's id: the client's X-Request-Id if it is a short token, else a new one.
    `environ` is the request's WSGI environ (the current request's by default)."""
    # Kept in the WSGI environ, which lives exactly as long as the request.
    if environ is None:
        environ = request.environ
    rid = environ.get("kmeweb.request_id")
    if rid is None:
        sent = environ.get("HTTP_X_REQUEST_ID", "")
        rid = sent if REQUEST_ID_RE.fullmatch(sent) else uuid.uuid4().hex[:12]
        environ["kmeweb.request_id"] = rid
    return rid


def echo_request_id(response: Response) -> Response:
    """The request's id on its answer (after_request, and the enrollment lane's)."""
    response.headers["X-Request-Id"] = request_id()
    return response


def _wants_json() -> bool:
    return request.path.startswith("/enroll") or (
        request.accept_mimetypes.best == "application/json"
    )


def _htmx_error(message: str, status: int):
    """The message in the flash area; the request's target stays as it was."""
    return flash_fragment(message, "error"), status, {"HX-Reswap": "none"}


def _http_message(err: HTTPException) -> str:
    if isinstance(err, CSRFError):
        return CSRF_MESSAGE
    if err.code == 400 and err.description and err.description != BadRequest.description:
        return err.description
    if err.code == 403 and err.description and err.description != Forbidden.description:
        return err.description
    return HTMX_MESSAGES.get(err.code or 500, err.description or err.name)


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    app.after_request(echo_request_id)

    @app.errorhandler(DomainError)
    def _domain_error(err: DomainError):
        db.session.rollback()
        if is_api_request():
            return domain_problem(err)
        if _wants_json():
            return jsonify(error=err.message), err.status
        if is_htmx():
            return _htmx_error(err.message, err.status)
        return render_template(
            "errors/error.html", status=err.status, message=err.message
        ), err.status

    @app.errorhandler(ApiProblem)
    def _api_problem(err: ApiProblem):
        db.session.rollback()
        return problem(err.status, err.code, err.detail, err.errors, err.headers)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if is_api_request():
            status = err.code or 500
            kept = {"Retry-After", "Allow", "WWW-Authenticate"}
            headers = {key: value for key, value in err.get_headers() if key in kept}
            detail = CSRF_MESSAGE if isinstance(err, CSRFError) else str(err.description)
            return problem(status, HTTP_PROBLEM_CODES.get(status, "error"), detail, None, headers)
        if _wants_json():
            return jsonify(error=err.name), err.code
        if is_htmx():
            return _htmx_error(_http_message(err), err.code or 500)
        message = CSRF_MESSAGE if isinstance(err, CSRFError) else err.description
        template = "errors/404.html" if err.code == 404 else "errors/error.html"
        return render_template(template, status=err.code, message=message, title=err.name), err.code

    @app.errorhandler(Exception)
    def _server_error(err: Exception):
        if isinstance(err, HTTPException):
            return _http_error(err)
        db.session.rollback()
        log.exception("unhandled error request_id=%s path=%s", request_id(), request.path)
        if is_api_request():
            return problem(500, "internal_error", "Something went wrong and was logged.")
        if _wants_json():
            return jsonify(error="internal error", request_id=request_id()), 500
        if is_htmx():
            return _htmx_error(
                f"Something went wrong and was logged (request id {request_id()}).", 500
            )
        return render_template("errors/500.html", request_id=request_id()), 500
