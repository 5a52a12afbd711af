"""Checks every browser test gets for free: axe-core on each page, and no CSP violation.

The `page` fixture in conftest.py runs axe-core (shipped inside axe-playwright-python; nothing
is fetched) on every page load and once more at the end of the test, and records every
Content-Security-Policy violation the browser reports; the test fails on any serious or
critical axe violation and on any CSP violation. `check_a11y(page)` checks the page as it is
now (an open dialog, a page changed by htmx) and fails at once.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

FAILING_IMPACTS = ("serious", "critical")

# Resolves once no CSS transition or animation runs: a fading dialog or an opening menu is
# half transparent, and axe would measure the contrast of the fade. (page.evaluate is not
# subject to the CSP; wait_for_function would need eval, which the CSP refuses.)
_STILL = """() => new Promise(resolve => {
  const still = () => document.getAnimations().every(a => a.playState !== "running");
  const tick = () => (still() ? resolve() : requestAnimationFrame(tick));
  tick();
})"""

# One axe run at a time per document: a load event's check and the test's own may overlap.
_AXE_RUN = """() => {
  const previous = window.kmewebAxeRun || Promise.resolve();
  const options = {resultTypes: ["violations"]};
  const run = previous.catch(() => null).then(() => axe.run(document, options));
  window.kmewebAxeRun = run;
  return run;
}"""

# Reports each violation to the Python side through an exposed function.
_CSP_RECORDER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.kmewebCspViolation({
    page: location.href, directive: e.violatedDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
  });
}, true);
"""


def axe_violations(page: Page) -> list[str]:
    """Serious and critical axe violations on the page now, one readable line each."""
    page.evaluate(_STILL)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    results = page.evaluate(_AXE_RUN)
    found = []
    for v in results["violations"]:
        if v["impact"] not in FAILING_IMPACTS:
            continue
        targets = "; ".join(" ".join(node["target"]) for node in v["nodes"])
        found.append(f"{page.url}: {v['impact']} {v['id']} ({v['help']}): {targets}")
    return found


def check_a11y(page: Page) -> None:
    """Fail now on any serious or critical axe violation (use it with a dialog open)."""
    found = axe_violations(page)
    assert not found, "axe-core found:\n  " + "\n  ".join(found)


def _navigated_away(exc: PlaywrightError) -> bool:
    text = str(exc)
    return "Execution context was destroyed" in text or "navigat" in text.lower()


class BrowserChecks:
    """Collects axe and CSP findings of one test's page; `finish` fails the test on any."""

    def __init__(self) -> None:
        self.a11y: list[str] = []
        self.csp: list[dict[str, Any]] = []
        self.pages_checked: list[str] = []

    def watch(self, page: Page) -> None:
        page.expose_function("kmewebCspViolation", self._on_csp_violation)
        page.add_init_script(_CSP_RECORDER)
        page.on("console", self._on_console)
        page.on("load", self._on_load)

    def _on_csp_violation(self, violation: dict[str, Any]) -> None:
        self.csp.append(violation)

    def _on_console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.csp.append({"console": message.text})

    def _on_load(self, page: Page) -> None:
        self._check(page)

    def _check(self, page: Page) -> None:
        if not page.url.startswith("http"):
            return
        try:
            self.a11y.extend(axe_violations(page))
            self.pages_checked.append(page.url)
        except PlaywrightError as exc:
            if not _navigated_away(exc):  # else the next page's load event checks that one
                raise

    def finish(self, page: Page) -> None:
        if not page.is_closed():
            self._check(page)  # the page as the test left it (htmx may have changed it)
        problems = []
        if self.a11y:
            problems.append("axe-core found:\n  " + "\n  ".join(dict.fromkeys(self.a11y)))
        if self.csp:
            lines = "\n  ".join(map(str, self.csp))
            problems.append(f"Content-Security-Policy violations:\n  {lines}")
        assert not problems, "\n".join(problems)
