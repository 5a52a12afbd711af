"""Work every test's app would repeat, done once per test process.

Each test builds its own app (create_app), so each one compiled every URL rule's builder
(werkzeug generates and compiles Python for each of ~150 rules) and every template it rendered
(Jinja parses and compiles base.html and the page on first use in each app): about half the
CPU of a test that renders a page. Both results depend only on their input (the rule with its
defaults; the template source, whose checksum keys Jinja's cache), so one process-wide copy
serves every app. Production builds one app per process and never needs this.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from werkzeug.routing.rules import Rule

_builders: dict[tuple[Any, ...], Any] = {}
_compile_builder = Rule._compile_builder


def _cached_compile_builder(self: Rule, append_unknown: bool = True) -> Any:
    defaults = tuple(sorted((k, repr(v)) for k, v in (self.defaults or {}).items()))
    converters = tuple((k, type(v).__name__) for k, v in self._converters.items())
    key = (self.rule, tuple(self._trace), defaults, converters, append_unknown)
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _compile_builder(self, append_unknown)
    return builder


class _MemoryBytecodeCache(BytecodeCache):
    def __init__(self) -> None:
        self._store: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._store.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._store[bucket.key] = bucket.bytecode_to_string()


_templates = _MemoryBytecodeCache()


def install() -> None:
    """Reuse URL rule builders across the apps of this process."""
    Rule._compile_builder = _cached_compile_builder  # type: ignore[method-assign]


def share_templates(app: Flask) -> None:
    """Let `app` load templates compiled by an earlier app of this process."""
    app.jinja_env.bytecode_cache = _templates
