"""The device side's own lane: POST /enroll answered without Flask's request hooks.

Every booted device calls POST /enroll, so it is the one URL whose cost per request decides how
many devices one web process serves (bench/enroll.py). Flask runs every app-wide hook for it,
and each one the console's pages need does nothing useful here: the session and remember-me
cookies (devices have no accounts), Flask-Limiter (the endpoint counts its own limits in one
Redis round trip, kmeweb.enroll.ratelimit), CSRF (exempt: no cookies to forge with), sign-in
(public), the NUL check of form fields (the body is JSON, checked by the service). Together
they cost about as much as the enrollment's own database work.

This WSGI middleware answers exactly `POST /enroll` inside a request context of its own, with
the view's code (kmeweb.enroll.views.answer) and the after-request steps an answer must still
have: the security headers, the request id, and the request metrics. Every other request, a
GET /enroll (405) included, goes on to Flask as before. It sits inside ProxyFix, so the
client address it rate-limits by is the proxy's forwarded one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from flask.ctx import RequestContext
from werkzeug.exceptions import HTTPException, InternalServerError

from kmeweb.enroll import views
from kmeweb.errors import echo_request_id
from kmeweb.extensions import db
from kmeweb.ops.metrics import count_request
from kmeweb.security import security_headers

PATH = "/enroll"


class EnrollLane:
    """WSGI middleware answering POST /enroll (see the module docstring)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        environ["kmeweb.started"] = time.perf_counter()
        app = self.app
        # A null session: a device has no cookie to read, and none is ever set for it.
        ctx = RequestContext(app, environ, session=app.session_interface.make_null_session(app))
        with ctx:
            try:
                # Before anything reads the body: no request reads more of it than the cap.
                request.max_content_length = app.config["ENROLL_MAX_BYTES"]
                response = views.answer()
            except HTTPException as err:  # a body cut short
                response = views.http_error(err)
            except Exception:
                db.session.rollback()
                if app.testing or app.debug:
                    raise
                app.log_exception(sys.exc_info())
                response = views.http_error(InternalServerError())
            response = count_request(echo_request_id(security_headers(response)))
            return response(environ, start_response)
