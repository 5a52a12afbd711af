"""POST /enroll: the device side (JSON only), the one endpoint without sign-in or CSRF.

Every answer is JSON: {"status": "registered", ...} or {"error": <stable code>, "message"}.
Order of checks: body size cap (set before any hook reads the body), content type (415), size
(413), JSON (400), fields (400); a refused request counts against its IP's limit (429 once
over), a well-formed one against its IP's and its device's (one Redis round trip); then the
service.
"""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from kmeweb.enroll import ratelimit, services
from kmeweb.enroll.services import EnrollError
from kmeweb.extensions import csrf, db, limiter

bp = Blueprint("enroll", __name__)
csrf.exempt(bp)


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


def _error(code: str, message: str, status: int, **headers: str):
    response = jsonify(error=code, message=message)
    response.status_code = status
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.url_value_preprocessor
def _cap_body(_endpoint, _values) -> None:
    # Runs before every before_request hook, so none of them (the NUL-byte check reads forms)
    # reads more of a device's request than the cap.
    request.max_content_length = current_app.config["ENROLL_MAX_BYTES"]


@bp.errorhandler(HTTPException)
def http_error(err: HTTPException):
    code = err.code or 500
    return _error(HTTP_CODES.get(code, "error"), err.name, code)


def enroll_error(err: EnrollError, ip: str | None = None):
    """A refused enrollment's JSON answer (`answer` catches every EnrollError it raises); a
    known device's refusal is recorded in its history (committed on its own)."""
    db.session.rollback()
    if services.record_refusal(db.session, err, ip):
        db.session.commit()
    response = jsonify(err.body())
    response.status_code = err.status
    response.headers["Cache-Control"] = "no-store"
    return response


def _too_many(retry_after: int):
    return _error(
        "rate_limited",
        "Too many enrollment attempts; try again later.",
        429,
        **{"Retry-After": str(retry_after)},
    )


def _read_request() -> services.EnrollRequest:
    """The request's JSON body, parsed and validated. Raises EnrollError."""
    if request.mimetype != "application/json":
        raise EnrollError("unsupported_media_type")
    try:
        data = json.loads(request.get_data(cache=False))
    except RequestEntityTooLarge:
        raise EnrollError("payload_too_large") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise EnrollError("bad_request", None, "The body is not valid JSON.") from None
    return services.parse_request(data)


def _server_url() -> str:
    return request.host_url.rstrip("/")


def answer():
    """The answer to one POST /enroll (the request context's): the view's whole work, shared by
    the Flask view and the fast lane (kmeweb.enroll.lane) that answers it in production."""
    ip = request.remote_addr or "-"
    ip_limit = ("ENROLL_IP_RATE_LIMIT", "ip", ip)
    try:
        try:
            req = _read_request()
        except EnrollError:
            # Refused input counts against the address too: garbage is throttled like guesses.
            retry = ratelimit.hit([ip_limit])
            if retry:
                return _too_many(retry)
            raise
        # One Redis round trip for both limits (a guess counts against the device it names).
        retry = ratelimit.hit([ip_limit, ("ENROLL_DEVICE_RATE_LIMIT", "device", req.device_key)])
        if retry:
            return _too_many(retry)
        session = db.session()  # the Session itself (the scoped proxy lacks in_transaction)
        if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
            # Every statement of an enrollment is atomic on its own (a registration and its
            # audit event are one statement): no BEGIN and COMMIT round trips to PostgreSQL.
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        result = services.enroll_device(session, req, ip, _server_url)
        session.commit()
    except EnrollError as err:
        return enroll_error(err, ip)
    response = jsonify(result)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/enroll")
def enroll():
    """Register a booted device and answer with its profile's configuration (secrets too)."""
    return answer()
