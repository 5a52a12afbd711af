"""Checks every browser test gets for free: axe-core on each page, and no CSP violation.

The `page` fixture in conftest.py runs axe-core (shipped inside axe-playwright-python; nothing
is fetched) on every page the test visits, and records every Content-Security-Policy violation
the browser reports; the test fails on any serious or critical axe violation and on any CSP
violation. `check_a11y(page)` checks the page as it is now (an open dialog, a page changed by
htmx) and fails at once.

How every page gets checked although tests move on quickly: axe is part of each document
(an init script) and starts on its load event; the page reports start and result through
exposed functions. A request for the next document is held back while the current one's
check runs, so a test that navigates at once still has the page it left checked. At the end
of the test the page is checked once more as the test left it.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Frame, Page, Request, Route

FAILING_IMPACTS = ("serious", "critical")

# Shared by the load-time check and check_a11y: one axe run at a time per document, each
# once no CSS transition or animation runs (a fading dialog or an opening menu is half
# transparent, and axe would measure the contrast of the fade), and again when one started
# during the run.
_RUNNER = """
window.kmewebAxe = () => {
  const still = () => new Promise(resolve => {
    const idle = () => document.getAnimations().every(a => a.playState !== "running");
    const tick = () => (idle() ? resolve() : requestAnimationFrame(tick));
    tick();
  });
  // The page's own observers of its layout answer in the rendering update after a change: a
  // table's scroll box becomes a tab stop when its ResizeObserver sees it scroll sideways
  // (static/js/app.js), one frame after the viewport narrowed. A run started in between judged
  // a box that scrolls and was not a tab stop yet (scrollable-region-focusable, about 1 load in
  // 15 of the Alerts page narrowed to 390 px as it loaded): each run waits for one rendering
  // update to end (its animation frame, then the next task, when the observers have answered).
  const rendered = () => new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve)));
  // A colour-contrast finding carries the colours axe measured and the state of the page
  // (a failure seen once in a loaded run must say what axe saw to be explained).
  const seen = (v, n) => (v.id !== "color-contrast" ? placed(n.element) :
    ` [${(n.failureSummary || "").replace(/\\s+/g, " ").trim()}; ` +
    `document ${document.readyState}, style sheets ${document.styleSheets.length}` +
    `, hovered: ${[...document.querySelectorAll(":hover")].map(e => e.tagName).join(">")}]`);
  // Any other finding says where its element was when the run ended (in the page or taken out
  // of it, hidden by itself or an ancestor) and the page's width and state then.
  const placed = element => {
    if (!element) return "";
    let hidden = "";
    for (let e = element; e && e.nodeType === 1 && !hidden; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.display === "none" || style.visibility !== "visible") {
        hidden = `${e.tagName}${e.id ? "#" + e.id : ""} ${style.display}/${style.visibility}`;
      }
    }
    return ` [${element.isConnected ? "in the page" : "taken out of the page"}` +
      `${hidden ? ", hidden by " + hidden : ""}, tabindex ${element.getAttribute("tabindex")}` +
      `, width ${window.innerWidth}, document ${document.readyState}` +
      `, after ${Math.round(performance.now())} ms]`;
  };
  const summary = results => results.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => `${location.href}: ${v.impact} ${v.id} (${v.help}): ` +
      v.nodes.map(n => n.target.join(" ") + seen(v, n)).join("; "));
  // A transition may also start while axe runs (the pointer left over a button of the new
  // page hovers it), or the page may change under it (htmx swaps a table that polls while work
  // is under way, a script shows or hides a part or makes it a tab stop, the test resizes the
  // viewport): then axe saw colours half way, or judged an element taken out of the page,
  // hidden or unreachable meanwhile, and the check runs again, at most 3 times. axe itself
  // changes nothing in the page (no mutation record during a run on six of the console's
  // pages, the Overview and the Alerts page among them).
  const once = () => still().then(rendered).then(() => {
    let moved = false;
    const mark = () => { moved = true; };
    const events = ["transitionstart", "animationstart", "htmx:beforeSwap"];
    events.forEach(name => document.addEventListener(name, mark, true));
    window.addEventListener("resize", mark);
    const changes = new MutationObserver(mark);
    changes.observe(document, {subtree: true, childList: true, attributes: true,
      attributeFilter: ["class", "style", "hidden", "inert", "open", "tabindex"]});
    const done = () => {
      if (changes.takeRecords().length) mark();
      changes.disconnect();
      events.forEach(name => document.removeEventListener(name, mark, true));
      window.removeEventListener("resize", mark);
    };
    return axe.run(document, {resultTypes: ["violations"], elementRef: true}).then(
      results => { done(); return {results, moved}; },
      error => { done(); throw error; });
  });
  const settled = tries => once().then(({results, moved}) =>
    (moved && tries > 1 ? settled(tries - 1) : results));
  const previous = window.kmewebAxeRun || Promise.resolve();
  const run = previous.catch(() => null).then(() => settled(3)).then(summary);
  window.kmewebAxeRun = run;
  return run;
};
"""

_ON_LOAD = """
if (window.top === window && document.contentType === "text/html") {
  window.addEventListener("load", () => {
    const doc = Math.random().toString(36).slice(2);
    window.kmewebAxeStarted(doc);
    const done = () => { window.kmewebLoadChecked = true; };
    window.kmewebAxe().then(
      found => { done(); window.kmewebAxeDone(doc, location.href, found, null); },
      error => { done(); window.kmewebAxeDone(doc, location.href, [], String(error)); });
  });
}
"""

# Reports each CSP violation to the Python side (tests may await window.kmewebCspReported).
_CSP_RECORDER = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.kmewebCspReported = window.kmewebCspViolation({
    page: location.href, directive: e.violatedDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
  });
}, true);
"""


# How long the load-time check of one page may take: 6.6 s on the API reference (about 9,000
# elements, nearly all of it colour contrast) on this two-core machine at rest, 21 s with the
# browser's core starved by three busier processes.
LOAD_CHECK_TIMEOUT_MS = 60_000


def axe_violations(page: Page) -> list[str]:
    """Serious and critical axe violations on the page now, one readable line each."""
    if not page.evaluate("() => typeof window.kmewebAxe === 'function'"):
        page.evaluate(AXE_SCRIPT + _RUNNER)  # a page opened before the checks were set up
    return page.evaluate("() => window.kmewebAxe()")


def check_a11y(page: Page) -> None:
    """Fail now on any serious or critical axe violation (use it with a dialog open)."""
    found = axe_violations(page)
    assert not found, "axe-core found:\n  " + "\n  ".join(found)


class BrowserChecks:
    """Collects axe and CSP findings of one test's page; `finish` fails the test on any."""

    def __init__(self, axe: bool = True) -> None:
        self.axe = axe  # off: CSP only (the PostgreSQL browser run: same pages, same markup)
        self.a11y: list[str] = []
        self.csp: list[dict[str, Any]] = []
        self.pages_checked: list[str] = []
        self._running: set[str] = set()
        self._held: list[Route] = []

    def watch(self, page: Page) -> None:
        page.expose_function("kmewebCspViolation", self._on_csp_violation)
        page.expose_function("kmewebAxeStarted", self._on_axe_started)
        page.expose_function("kmewebAxeDone", self._on_axe_done)
        page.add_init_script(_CSP_RECORDER)
        page.on("console", self._on_console)
        if not self.axe:
            return
        page.add_init_script(AXE_SCRIPT + _RUNNER + _ON_LOAD)
        page.on("framenavigated", self._on_navigated)
        page.route(lambda url: "/static/" not in url, self._on_request)

    def wait_for_the_load_check(self, page: Page) -> None:
        """Wait until axe has checked the page as it loaded, before asserting on a long page.

        An axe run holds the page's main thread from start to end (its rules run as one chain
        of promise callbacks), so nothing else the page would do runs meanwhile, Playwright's
        polls included. An expectation polled while the page was still being parsed (a count
        of its sections) sees the partial page, and its next look waits for the end of the run:
        on a long page on a loaded machine, past the expectation's deadline. After this, the
        page answers at once."""
        if self.axe:
            page.wait_for_function(
                "() => window.kmewebLoadChecked === true", timeout=LOAD_CHECK_TIMEOUT_MS
            )

    def _on_csp_violation(self, violation: dict[str, Any]) -> None:
        self.csp.append(violation)

    def _on_console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.csp.append({"console": message.text})

    def _on_axe_started(self, doc: str) -> None:
        self._running.add(doc)

    def _on_axe_done(self, doc: str, href: str, found: list[str], error: str | None) -> None:
        self._running.discard(doc)
        self.pages_checked.append(href)
        self.a11y.extend(found)
        if error:
            self.a11y.append(f"{href}: axe-core could not run: {error}")
        if not self._running:
            held, self._held = self._held, []
            for route in held:
                route.fallback()

    def _on_navigated(self, frame: Frame) -> None:
        """A new document replaced the page without waiting (a navigation that is not held,
        such as opening a static file): the old document's check can never finish, so stop
        waiting for it, or every later navigation would be held for good."""
        if frame.parent_frame is None and self._running:
            self._running.clear()
            held, self._held = self._held, []
            for route in held:
                route.fallback()

    def _on_request(self, route: Route, request: Request) -> None:
        if self._running and request.is_navigation_request() and request.frame.parent_frame is None:
            self._held.append(route)  # leave the page once axe has finished with it
            return
        route.fallback()

    def finish(self, page: Page) -> None:
        if self.axe and not page.is_closed() and page.url.startswith("http"):
            try:
                if page.evaluate("() => document.contentType") == "text/html":
                    self.a11y.extend(axe_violations(page))  # the page as the test left it
            except PlaywrightError as exc:
                if "Execution context was destroyed" not in str(exc):
                    raise
        problems = []
        if self.a11y:
            problems.append("axe-core found:\n  " + "\n  ".join(dict.fromkeys(self.a11y)))
        if self.csp:
            lines = "\n  ".join(map(str, self.csp))
            problems.append(f"Content-Security-Policy violations:\n  {lines}")
        assert not problems, "\n".join(problems)
