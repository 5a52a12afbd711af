"""Work every test's app would repeat, done once per test process.

Each test builds its own app (create_app), so each one compiled every URL rule's builder
(werkzeug generates and compiles Python for each of ~150 rules) and every template it rendered
(Jinja parses and compiles base.html and the page on first use in each app): about half the
CPU of a test that renders a page. Both results depend only on their input (the rule with its
defaults; the template source, whose checksum keys Jinja's cache), so one process-wide copy
serves every app. So does the parse of each rule's string into the parts the matcher is built
from (werkzeug's Rule._parse_rule, about half of what was left of create_app: 25 ms a test):
the parts, the converters and the arguments depend only on the string and on the converter
classes the map names (converters keep their map but never read it). Production builds one
app per process and never needs this.

Each KME simulator a test starts reads the session's two RSA keys from their base64 DER text,
and OpenSSL checks a 2,048-bit private key as it loads it (30-75 ms a key, 2 a simulator): the
simulator's key reader keeps each key it read, by its text (a key object is immutable).
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from werkzeug.routing.rules import Rule

from kmeweb.knox.simulator import keys as simulator_keys

_builders: dict[tuple[Any, ...], Any] = {}
_compile_builder = Rule._compile_builder
_parsed: dict[tuple[Any, ...], tuple[list[Any], list[Any], dict[str, Any], set[str]]] = {}
_parse_rule = Rule._parse_rule


def _cached_parse_rule(self: Rule, rule: str) -> list[Any]:
    assert self.map is not None
    key = (rule, frozenset(self.map.converters.items()))
    parsed = _parsed.get(key)
    if parsed is None:
        trace_at = len(self._trace)
        parts = list(_parse_rule(self, rule))
        trace = self._trace[trace_at:]
        # in the rule's order: the matcher pairs the converters with the groups it matched
        variables = list(dict.fromkeys(name for dynamic, name in trace if dynamic))
        converters = {name: self._converters[name] for name in variables}
        parsed = _parsed[key] = (parts, trace, converters, set(variables))
        return list(parts)
    parts, trace, converters, arguments = parsed
    self._trace.extend(trace)
    self._converters.update(converters)
    self.arguments.update(arguments)
    return list(parts)


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


# A bad key raises, and functools.cache keeps no result for it.
_cached_read_private = functools.cache(simulator_keys.read_private)


def install() -> None:
    """Reuse URL rule parses and builders, and the simulator's keys, across this process."""
    simulator_keys.read_private = _cached_read_private
    Rule._parse_rule = _cached_parse_rule  # type: ignore[method-assign]
    Rule._compile_builder = _cached_compile_builder  # type: ignore[method-assign]


def share_templates(app: Flask) -> None:
    """Let `app` load templates compiled by an earlier app of this process."""
    app.jinja_env.bytecode_cache = _templates
