"""Imported by every bench script before kmeweb: puts the repository on sys.path and gives the
run a temporary folder of its own (KMEWEB_INSTANCE_DIR, removed at exit) and development
secrets, unless the environment sets them. `log` writes progress to stderr (stdout carries
only the `metric: value unit` lines)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = tempfile.TemporaryDirectory(prefix="kmeweb-bench-")
os.environ["KMEWEB_INSTANCE_DIR"] = TMP.name
os.environ.setdefault("SECRET_KEY", "bench-secret-key-0123456789abcdef-not-for-production")
os.environ.setdefault("KMEWEB_ENCRYPTION_KEY", "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE=")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
