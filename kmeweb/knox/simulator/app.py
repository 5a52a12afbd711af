"""The KME simulator as a Flask app: the factory, fault injection and call counting.

The API itself is in `api.py`, the `/_sim/` control endpoints in `control.py`; both answer
errors with the documented Knox body. Nothing here imports the client (`kmeweb.knox`): the
simulator is a second, independent reading of kme-api.md.
"""

from __future__ import annotations

import fnmatch
import re
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from kmeweb.knox.simulator import errors as codes
from kmeweb.knox.simulator import keys
from kmeweb.knox.simulator.api import KmeApi
from kmeweb.knox.simulator.control import control_blueprint
from kmeweb.knox.simulator.demo import seed_demo
from kmeweb.knox.simulator.errors import SimError, error_body
from kmeweb.knox.simulator.responses import json_response
from kmeweb.knox.simulator.routes import routes
from kmeweb.knox.simulator.state import FaultRule, SimSettings, SimState

EXTENSION_KEY = "kme_sim"


def _error_response(exc: SimError) -> Response:
    return json_response(exc.body(), exc.status, exc.headers)


def get_state(app: Flask) -> SimState:
    """The SimState behind a simulator app."""
    return app.extensions[EXTENSION_KEY]


def create_simulator(
    state_path: str | None = None,
    enable_control: bool = False,
    max_devices_per_request: int = 1000,
    max_page_size: int = 1000,
    *,
    oauth_token_lifetime_s: float = 599.0,
    legacy_token_lifetime_s: float = 1800.0,
    async_profile_delay_s: float = 0.3,
    legacy_require_unique_request_jti: bool = False,
    require_json_content_type: bool = False,
    seed_demo_data: bool = False,
    encryption_private_key: str | None = None,
    demo_legacy_private_key: str | None = None,
    rng_seed: int | None = None,
    paths: dict[str, str] | None = None,
) -> Flask:
    """Build a simulator app.

    State is in memory, or loaded from and written through to the SQLite file `state_path`.
    `enable_control` mounts `/_sim/` (else those paths answer 404). `seed_demo_data` seeds the
    demo tenant (see `seed_demo`). Keys may be given as PEM or base64 DER to skip RSA key
    generation (tests). Creating the app opens (and may create) the state file.
    """
    settings = SimSettings(
        max_devices_per_request=max_devices_per_request,
        max_page_size=max_page_size,
        oauth_token_lifetime_s=oauth_token_lifetime_s,
        legacy_token_lifetime_s=legacy_token_lifetime_s,
        async_profile_delay_s=async_profile_delay_s,
        legacy_require_unique_request_jti=legacy_require_unique_request_jti,
        require_json_content_type=require_json_content_type,
    )
    enc_key = keys.read_private(encryption_private_key) if encryption_private_key else None
    state = SimState(state_path, settings=settings, encryption_key=enc_key, rng_seed=rng_seed)
    app = Flask("kmeweb.knox.simulator")
    app.extensions[EXTENSION_KEY] = state
    app.config["SIM_DEMO_LEGACY_KEY"] = demo_legacy_private_key
    KmeApi(state, routes(paths)).register(app)
    if enable_control:
        app.register_blueprint(control_blueprint(state, app))
    if seed_demo_data:
        seed_demo(state, legacy_private_key=demo_legacy_private_key)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        names = {404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        code = codes.RESOURCE_NOT_FOUND if status == 404 else status * 10000
        return json_response(
            error_body(
                code, names.get(status, exc.name.upper().replace(" ", "_")), exc.description
            ),
            status,
        )

    @app.errorhandler(SimError)
    def _sim_error(exc: SimError) -> Response:
        return _error_response(exc)

    @app.before_request
    def _faults() -> Response | None:
        if request.path.startswith("/_sim"):
            return None
        g.sim_started = time.monotonic()
        return _apply_faults(state)

    @app.after_request
    def _count(resp: Response) -> Response:
        if not request.path.startswith("/_sim"):
            rule = request.url_rule.rule if request.url_rule else request.path
            with state.lock:
                state.count_endpoint(f"{request.method} {rule}", resp.status_code)
        return resp

    return app


def _apply_faults(state: SimState) -> Response | None:
    path, method = request.path, request.method
    delay = 0.0
    fired: FaultRule | None = None
    with state.lock:
        for rule in list(state.faults):
            if rule.methods and method not in rule.methods:
                continue
            if rule.path.startswith("re:"):
                if not re.search(rule.path[3:], path):
                    continue
            elif not fnmatch.fnmatchcase(path, rule.path):
                continue
            fires = rule.status is not None and fired is None and state.rng.random() < rule.rate
            if not fires and not (rule.latency_ms or rule.hang_s):
                continue
            rule.hits += 1
            delay += rule.latency_ms / 1000.0 + rule.hang_s
            if fires:
                fired = rule
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    state.faults.remove(rule)
    if delay:
        time.sleep(delay)
    if fired is None:
        return None
    status = int(fired.status or 500)
    default = {
        429: (4290000, "TOO_MANY_REQUESTS"),
        500: (codes.INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR"),
        502: (5020000, "BAD_GATEWAY"),
        503: (5030000, "SERVICE_UNAVAILABLE"),
        504: (5040000, "GATEWAY_TIMEOUT"),
    }.get(status, (status * 10000, "INJECTED_FAULT"))
    headers = {}
    if fired.retry_after is not None:
        ra = fired.retry_after
        headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
    body = error_body(fired.code or default[0], fired.message or default[1], "injected fault")
    return json_response(body, status, headers)
