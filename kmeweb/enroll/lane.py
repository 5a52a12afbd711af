"""The device side's own lane: POST /enroll answered without Flask's request machinery.

Every booted device calls POST /enroll, so it is the one URL whose cost per request decides how
many devices one web process serves (bench/enroll.py). Flask runs every app-wide hook for it,
and each one the console's pages need does nothing useful here: the session and remember-me
cookies (devices have no accounts), Flask-Limiter (the endpoint counts its own limits in one
Redis round trip, kmeweb.enroll.ratelimit), CSRF (exempt: no cookies to forge with), sign-in
(public), the NUL check of form fields (the body is JSON, checked by the service). A request
context (URL matching, teardown) and a response object cost as much again.

This WSGI middleware answers exactly `POST /enroll` inside an application context (the
database and the configuration) with the view's code (kmeweb.enroll.views.answer) on a
request object of its own, and writes the answer itself with the headers every answer must
have: the security headers, the request id; and it counts the request in the request
metrics. Every other request, a GET /enroll (405) included, goes on to Flask as before. It sits
inside ProxyFix, so the client address it rate-limits by is the proxy's forwarded one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException, InternalServerError

from kmeweb.enroll import views
from kmeweb.errors import request_id
from kmeweb.ops.metrics import observe_request
from kmeweb.security import security_header_pairs

PATH = "/enroll"
ENDPOINT = "enroll.enroll"  # the Flask view's endpoint: one metrics series for both
_REASONS = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class EnrollLane:
    """WSGI middleware answering POST /enroll (see the module docstring)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        started = environ["kmeweb.started"] = time.perf_counter()
        app = self.app
        with app.app_context():
            req = app.request_class(environ)
            # Before anything reads the body: no request reads more of it than the cap.
            req.max_content_length = app.config["ENROLL_MAX_BYTES"]
            try:
                status, body, headers = views.answer(req)
            except HTTPException as err:  # a body cut short
                status, body, headers = views.http_answer(err)
            except Exception:
                if app.testing or app.debug:
                    raise
                request_id(environ)  # the log line carries it
                with app.request_context(environ):
                    app.log_exception(sys.exc_info())
                status, body, headers = views.http_answer(InternalServerError())
            payload = app.json.dumps(body, separators=(",", ":")).encode()
            start_response(
                _REASONS[status],
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(payload))),
                    *headers.items(),
                    *security_header_pairs(),
                    ("X-Request-Id", request_id(environ)),
                ],
            )
        observe_request(ENDPOINT, status, started)
        return [payload]
