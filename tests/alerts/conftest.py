"""A real HTTP receiver on 127.0.0.1 standing in for a Slack, Teams or custom webhook."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.servers import serving
from tests.sync_fixtures import with_sync_config

#: No waiting between attempts in tests (production waits 30 s, 60 s, ...), three attempts.
ALERT_TEST_CONFIG = {"ALERT_RETRY_BASE_S": 0, "ALERT_MAX_ATTEMPTS": 3, "ALERT_TIMEOUT_S": 5}


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return {**with_sync_config(app_config), **ALERT_TEST_CONFIG}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    #: HTTP status of the next answers (200 when empty); consumed one per request.
    statuses: list[int] = field(default_factory=list)
    always: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else state.always
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver is down")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server) as url:
        state.url = f"{url}/hook"
        yield state
