"""Pause Python's cyclic garbage collector while bulk work allocates hundreds of thousands of
small objects (a CSV import's rows, the plan made of them).

Each allocation counts toward the next collection, and every few hundred thousand of them the
collector walks the whole heap, which by then holds the rows made so far: an import of 100,000
rows spent more than half its time there (bench/import.py). Reference counting still frees
what is no longer used while the collector is off; only cycles wait for it to come back.

The pause is process wide and threads share it: it is counted, and the collector is switched
back on when the last pause ends, and only if it was on when the first one began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (see the module docstring)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
