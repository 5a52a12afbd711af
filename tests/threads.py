"""Threads in tests whose failures fail the test.

An assertion that fails inside a plain `threading.Thread` only prints a warning; the test
would pass. `run_in_threads` collects each thread's exception and re-raises the first in
the main thread. (pyproject also turns pytest's unhandled-thread-exception warning into an
error, as a net for threads started elsewhere.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(targets: list[Callable[[], object]], timeout: float = 60) -> None:
    """Run each target in its own thread, wait for all, re-raise the first failure."""
    errors: list[BaseException] = []
    lock = threading.Lock()

    def _wrap(target: Callable[[], object]) -> Callable[[], None]:
        def _run() -> None:
            try:
                target()
            except BaseException as exc:  # re-raised in the main thread below
                with lock:
                    errors.append(exc)

        return _run

    threads = [threading.Thread(target=_wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    alive = [t for t in threads if t.is_alive()]
    if errors:
        raise errors[0]
    assert not alive, f"{len(alive)} thread(s) still running after {timeout} s"
