"""POST /enroll: the device side (JSON only), the one endpoint without sign-in or CSRF.

Every answer is JSON: {"status": "registered", ...} or {"error": <stable code>, "message"}.
Order of checks: body size cap (set before anything reads the body), content type (415), size
(413), JSON (400), fields (400); a refused request counts against its IP's limit (429 once
over), a well-formed one against its IP's and its device's (one Redis round trip); then the
service.

In production the enrollment lane (kmeweb.enroll.lane) answers POST /enroll before Flask sees
it, with `answer`; the Flask view below gives the same answer to anything that reaches it.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Request, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from kmeweb.enroll import ratelimit, services
from kmeweb.enroll.engine import lane_transaction
from kmeweb.enroll.services import EnrollError
from kmeweb.extensions import csrf, limiter

bp = Blueprint("enroll", __name__)
csrf.exempt(bp)

#: An answer: HTTP status, JSON body, headers besides the ones every answer carries.
Answer = tuple[int, dict[str, Any], dict[str, str]]
NO_STORE = {"Cache-Control": "no-store"}


@limiter.request_filter
def _limited_by_its_own_counters() -> bool:
    """Flask-Limiter skips the device side: kmeweb.enroll.ratelimit counts it (one round trip)."""
    return request.blueprint == "enroll"


HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _error(code: str, message: str, status: int, **headers: str) -> Answer:
    return status, {"error": code, "message": message}, {**headers, **NO_STORE}


def response(answer: Answer) -> Response:
    """An answer as Flask's JSON response."""
    status, body, headers = answer
    out = current_app.json.response(body)
    out.status_code = status
    out.headers.update(headers)
    return out


@bp.url_value_preprocessor
def _cap_body(_endpoint, _values) -> None:
    # Runs before every before_request hook, so none of them (the NUL-byte check reads forms)
    # reads more of a device's request than the cap.
    request.max_content_length = current_app.config["ENROLL_MAX_BYTES"]


def http_answer(err: HTTPException) -> Answer:
    """The JSON answer to an HTTP error (a 405, a body cut short, a 500)."""
    code = err.code or 500
    return _error(HTTP_CODES.get(code, "error"), err.name, code)


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    return response(http_answer(err))


def enroll_error(err: EnrollError, ip: str | None = None) -> Answer:
    """A refused enrollment's JSON answer (`answer` catches every EnrollError it raises); a
    known device's refusal is recorded in its history (in a transaction of its own)."""
    if err.device_id is not None:
        with lane_transaction() as conn:
            services.record_refusal(conn, err, ip)
    return err.status, err.body(), NO_STORE


def _too_many(retry_after: int) -> Answer:
    return _error(
        "rate_limited",
        "Too many enrollment attempts; try again later.",
        429,
        **{"Retry-After": str(retry_after)},
    )


def _read_request(req: Request) -> services.EnrollRequest:
    """The request's JSON body, parsed and validated. Raises EnrollError."""
    if req.mimetype != "application/json":
        raise EnrollError("unsupported_media_type")
    try:
        data = json.loads(req.get_data(cache=False))
    except RequestEntityTooLarge:
        raise EnrollError("payload_too_large") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise EnrollError("bad_request", None, "The body is not valid JSON.") from None
    return services.parse_request(data)


def answer(req: Request) -> Answer:
    """The answer to one POST /enroll: the view's whole work, shared by the Flask view and the
    lane (kmeweb.enroll.lane) that answers it in production. `req.max_content_length` must be
    set before (the lane and `_cap_body` set it)."""
    ip = req.remote_addr or "-"
    ip_limit = ("ENROLL_IP_RATE_LIMIT", "ip", ip)
    try:
        try:
            parsed = _read_request(req)
        except EnrollError:
            # Refused input counts against the address too: garbage is throttled like guesses.
            retry = ratelimit.hit([ip_limit])
            if retry:
                return _too_many(retry)
            raise
        # One Redis round trip for both limits (a guess counts against the device it names).
        device_limit = ("ENROLL_DEVICE_RATE_LIMIT", "device", parsed.device_key)
        retry = ratelimit.hit([ip_limit, device_limit])
        if retry:
            return _too_many(retry)
        with lane_transaction() as conn:
            result = services.enroll_device(conn, parsed, ip, lambda: req.host_url.rstrip("/"))
    except EnrollError as err:
        return enroll_error(err, ip)
    return 200, result, NO_STORE


@bp.post("/enroll")
def enroll() -> Response:
    """Register a booted device and answer with its profile's configuration (secrets too)."""
    return response(answer(request._get_current_object()))  # type: ignore[attr-defined]
