"""Screenshot every console page and run axe-core on it, to look at the UI as an admin would.

    .venv/bin/python scripts/ui_look.py [--out /tmp/kmeweb-shots] [--widths 1280,390]

Builds a throwaway SQLite database with demo rows (operations in every state, audit events),
serves the app on a free port, signs in as an admin and as a viewer, and saves one PNG per
page, width and colour scheme (`<role>-<scheme>-<width>-<page>.png`). It prints each page's
serious and critical axe violations and any horizontal overflow. Needs Redis at REDIS_URL
(default redis://127.0.0.1:6379/12) and Chromium at KMEWEB_CHROMIUM.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = Path(tempfile.mkdtemp(prefix="kmeweb-look-"))
os.environ.setdefault("KMEWEB_INSTANCE_DIR", str(TMP / "instance"))
os.environ.setdefault("SECRET_KEY", "look-secret-key-not-for-production-000000")
os.environ.setdefault("KMEWEB_ENCRYPTION_KEY", "x6bTJp0Q2R9T9tqkT6v1wW1C7sGkKqN8s0u3Yh0v7lE=")

from axe_playwright_python.sync_playwright import Axe  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from kmeweb import create_app  # noqa: E402
from kmeweb.extensions import db, utcnow  # noqa: E402

PASSWORD = "correct horse battery"
IMPACTS = os.environ.get("KMEWEB_AXE_IMPACTS", "serious,critical").split(",")
CHROMIUM = os.environ.get("KMEWEB_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def quiet() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def seed(app) -> dict[str, int]:
    from kmeweb.audit import services as audit
    from kmeweb.auth import services as auth
    from kmeweb.operations import services as ops
    from kmeweb.outbox.models import Change

    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        admin, _ = auth.create_admin(db.session, "admin@example.com", PASSWORD, "admin", "Ada")
        auth.create_admin(db.session, "viewer@example.com", PASSWORD, "viewer", "")
        now = utcnow()
        ids = {}
        rows = [
            ("sync.pull", "Sync from KME", "done", 1450, 1450, None),
            ("device.move", "Move 1,200 devices to Field Sales (Samsung Galaxy XCover)",
             "running", 1200, 480, None),
            ("device.approve", "Approve upload 4411 from Acme Reseller", "queued", 250, 0, None),
            ("device.move", "Move 5 devices to Warehouse", "failed", 5, 0,
             "1 of 1 changes failed: KME refused it (4001700): the device is already assigned "
             "to a profile managed by another MDM tenant"),
            ("sync.pull", "Sync from KME", "done", 0, 0, None),
        ]  # fmt: skip
        for i, (kind, label, status, total, done, error) in enumerate(rows):
            op = ops.create_operation(db.session, kind, label, total, admin)
            op.status, op.done, op.error = status, done, error
            op.created_at = op.started_at = now - timedelta(minutes=40 - i * 7)
            if status in ("done", "failed"):
                op.finished_at = op.started_at + timedelta(minutes=3)
            ids[status] = op.id
        db.session.add_all(
            [
                Change(kind="device_move", payload={}, device_count=5, status="failed",
                       attempts=8, operation_id=ids["failed"],
                       last_error="KME refused it (4001700): device already assigned"),
                Change(kind="device_move", payload={}, device_count=1200, status="running",
                       attempts=1, operation_id=ids["running"]),
            ]
        )  # fmt: skip
        for i in range(30):
            audit.record(
                db.session,
                admin if i % 3 else "sync",
                ["auth.login", "device.move", "profile.update", "upload.approve"][i % 4],
                "profile" if i % 2 else "device",
                1000 + i,
                {"from": "Default Profile", "to": "Field Sales", "count": i * 10},
                ip="192.0.2.10",
            )
        db.session.commit()
        return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/kmeweb-shots")
    parser.add_argument("--widths", default="1280,390")
    parser.add_argument("--schemes", default="light,dark")
    parser.add_argument("--roles", default="admin,viewer")
    opts = parser.parse_args()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12")
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{TMP / 'look.sqlite'}",
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url,
            "LOGIN_RATE_LIMIT": "1000 per minute",
            "LOGIN_IP_RATE_LIMIT": "1000 per minute",
        }
    )
    ids = seed(app)
    quiet()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    pages = {
        "overview": "/",
        "alerts": "/admin/alerts/",
        "alerts-new": "/admin/alerts/new",
        "operations": "/operations/",
        "operations-failed": "/operations/?status=failed",
        "operations-running": "/operations/?status=active",
        "operation-failed": f"/operations/{ids['failed']}",
        "operation-running": f"/operations/{ids['running']}",
        "audit": "/audit/",
        "audit-page2": "/audit/?per_page=10&page=2",
        "audit-error": "/audit/?date_from=yesterday&actor=sync",
        "accounts": "/admin/accounts/",
        "accounts-new": "/admin/accounts/new",
        "account": "/admin/accounts/1",
        "404": "/no/such/page",
    }
    axe = Axe()
    total = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for role in opts.roles.split(","):
            for scheme in opts.schemes.split(","):
                for width in [int(w) for w in opts.widths.split(",")]:
                    ctx = browser.new_context(
                        viewport={"width": width, "height": 900}, color_scheme=scheme
                    )
                    page = ctx.new_page()
                    csp: list[str] = []
                    page.on(
                        "console",
                        lambda m, csp=csp: (
                            csp.append(m.text) if "Content Security Policy" in m.text else None
                        ),
                    )
                    tag = f"{role}-{scheme}-{width}"
                    page.goto(f"{base}/auth/login")
                    total += check(page, axe, out, f"{tag}-login", width)
                    page.get_by_label("Email").fill("x@example.com")
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_load_state()
                    total += check(page, axe, out, f"{tag}-login-error", width)
                    page.get_by_label("Email").fill(f"{role}@example.com")
                    page.get_by_label("Password").fill(PASSWORD)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_url(lambda u: "/auth/login" not in u)
                    for name, path in pages.items():
                        page.goto(base + path)
                        total += check(page, axe, out, f"{tag}-{name}", width)
                    toggler = page.locator(".navbar-toggler")
                    if toggler.count() and toggler.is_visible():
                        toggler.click()
                        page.locator(".navbar-collapse.show").wait_for()
                        page.locator(".navbar-collapse:not(.collapsing)").wait_for()
                        page.screenshot(path=out / f"{tag}-menu-open.png")
                    page.goto(base + f"/operations/{ids['failed']}")
                    retry = page.locator("[data-confirm] button, button[data-confirm]")
                    if role == "admin" and retry.count():
                        retry.first.click()  # opens the dialog; Cancel keeps the data as it is
                        page.get_by_role("dialog").wait_for()
                        total += check(page, axe, out, f"{tag}-confirm-dialog", width)
                        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
                    for text in csp:
                        print(f"{tag}: CSP: {text}")
                    ctx.close()
        browser.close()
    server.shutdown()
    print(f"axe violations ({', '.join(IMPACTS)}) in all: {total}; screenshots in {out}")


STILL = """() => new Promise(resolve => {
  const still = () => document.getAnimations().every(a => a.playState !== "running");
  const tick = () => (still() ? resolve() : requestAnimationFrame(tick));
  tick();
})"""


def check(page, axe: Axe, out: Path, name: str, width: int) -> int:
    # A fading dialog or opening menu is half transparent: look once everything stands still.
    # (wait_for_function would need eval, which the CSP refuses; evaluate is not subject to it.)
    page.evaluate(STILL)
    page.screenshot(path=out / f"{name}.png", full_page=True)
    scroll = page.evaluate("document.documentElement.scrollWidth")
    if scroll > width:
        wide = page.evaluate(
            """w => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 1)
                .filter(e => !e.closest('.table-responsive') || e.matches('.table-responsive'))
                .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' +
                  Math.round(e.getBoundingClientRect().right))""",
            width,
        )
        print(f"{name}: scrolls sideways ({scroll} > {width}): {wide}")
    violations = [
        v for v in axe.run(page).response["violations"] if v["impact"] in ("serious", "critical")
    ]
    for v in violations:
        targets = "; ".join(", ".join(n["target"]) for n in v["nodes"])
        print(f"{name}: {v['impact']} {v['id']} ({len(v['nodes'])}): {targets}")
    return len(violations)


if __name__ == "__main__":
    main()
