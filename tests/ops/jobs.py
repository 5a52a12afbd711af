"""Job functions for tests that run real worker processes (importable there: PYTHONPATH)."""

from __future__ import annotations

import time


def sleep_job(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
