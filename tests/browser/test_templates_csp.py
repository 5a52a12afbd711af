"""Templates stay within the Content-Security-Policy: the browser tests catch a violation on
the pages they visit; this catches it in a template no browser test renders yet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# What the policy refuses (or, for hx-on and hx-confirm, what the console does not use:
# hx-on needs eval, hx-confirm calls window.confirm instead of the console's dialog).
FORBIDDEN = {
    "inline style attribute": re.compile(r"\sstyle\s*=", re.I),
    "<style> element": re.compile(r"<style[\s>]", re.I),
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "hx-on": re.compile(r"\shx-on", re.I),
    "hx-confirm": re.compile(r"\shx-confirm", re.I),
}


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_template_has_nothing_the_csp_refuses(template: Path):
    text = re.sub(r"{#.*?#}", "", template.read_text(), flags=re.S)  # comments may name them
    found = [name for name, pattern in FORBIDDEN.items() if pattern.search(text)]
    assert not found, f"{template.relative_to(TEMPLATES)}: {', '.join(found)}"


def test_the_htmx_config_keeps_htmx_within_the_policy():
    base = (TEMPLATES / "base.html").read_text()
    assert '"includeIndicatorStyles":false' in base  # else htmx inserts a <style>
    assert '"allowEval":false' in base
