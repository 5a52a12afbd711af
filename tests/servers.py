"""Loopback servers in a thread for tests (kmeweb itself, the simulator, webhook receivers)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server

# socketserver polls its shutdown flag every 0.5 s unless told: each test that stopped a server
# waited up to that long in its teardown. 10 ms costs nothing and makes shutdown prompt.
POLL_S = 0.01


def wsgi_server(app: Any) -> socketserver.BaseServer:
    """A threaded Werkzeug server for `app` on a free loopback port (not yet serving)."""
    return make_server("127.0.0.1", 0, app, threaded=True)


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[str]:
    """Serve `server` in a daemon thread; yields its base URL and stops it on exit."""
    thread = threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def start_serving(server: socketserver.BaseServer) -> str:
    """Serve `server` in a daemon thread until the caller shuts it down; returns its URL."""
    threading.Thread(target=server.serve_forever, args=(POLL_S,), daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
