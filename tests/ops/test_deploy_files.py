"""The files in deploy/ are checked by the tools that will read them: systemd-analyze verify
(the units), promtool (the alert rules, whose every metric /metrics must expose), gunicorn
--check-config (its settings and the app import) and nginx -t (the site)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DB
from tests.ops.tools import need
from tests.sync_fixtures import ROOT

# The same on either database: run once, in the SQLite half of `make test` (time budget).
pytestmark = pytest.mark.skipif(
    TEST_DB != "sqlite",
    reason="the deploy files do not depend on the database: checked in the SQLite run",
)

DEPLOY = ROOT / "deploy"


def _units_here(tmp_path: Path) -> Path:
    """The units as installed at this checkout (/opt/kmeweb is where the README puts it)."""
    out = tmp_path / "units"
    out.mkdir()
    for unit in (DEPLOY / "systemd").glob("*.service"):
        (out / unit.name).write_text(unit.read_text().replace("/opt/kmeweb", str(ROOT)))
    # verify loads an instance of the template, as `systemctl enable kmeweb-worker@1` would.
    return out


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = need("systemd-analyze", "systemd")
    units = _units_here(tmp_path)
    assert {p.name for p in units.iterdir()} == {
        "kmeweb-web.service",
        "kmeweb-worker@.service",
        "kmeweb-scheduler.service",
    }
    for name in ("kmeweb-web.service", "kmeweb-worker@1.service", "kmeweb-scheduler.service"):
        result = subprocess.run(
            [analyze, "verify", "--man=no", f"./{name}"],
            cwd=units,
            capture_output=True,
            text=True,
        )
        # Warnings (an unknown key, a missing binary) go to stderr with exit status 0: none.
        assert result.returncode == 0 and result.stderr.strip() == "", (name, result.stderr)
    for unit in units.iterdir():
        text = unit.read_text()
        for setting in (
            "EnvironmentFile=/etc/kmeweb/kmeweb.env",
            "User=kmeweb",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
        ):
            assert setting in text, (unit.name, setting)


def _rule_metrics() -> set[str]:
    text = (DEPLOY / "prometheus-rules.yml").read_text()
    return set(re.findall(r"\bkmeweb_[a-z_]+\b", text)) - {"kmeweb"}


def test_alert_rules_pass_promtool_and_name_only_metrics_that_exist(client):
    promtool = need("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus-rules.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    exposition = client.get("/metrics").get_data(as_text=True)
    exposed = set(re.findall(r"^# (?:HELP|TYPE) (\S+)", exposition, re.M))
    exposed |= {f"{n}_total" for n in exposed}
    named = _rule_metrics()
    assert {"kmeweb_outbox_oldest_pending_seconds", "kmeweb_rq_workers"} <= named
    assert named <= exposed, named - exposed


def test_gunicorn_config_loads_with_the_app(tmp_path, database_url):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "mp"),
        "KMEWEB_BIND": "127.0.0.1:0",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "-c",
            "deploy/gunicorn.conf.py",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_site_passes_nginx_t(tmp_path):
    nginx = need("nginx", "nginx-light")
    site = (DEPLOY / "nginx.conf").read_text()
    # A throwaway certificate where the site expects the real one.
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kmeweb.example.com",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    site = site.replace("/etc/ssl/kmeweb/fullchain.pem", str(cert)).replace(
        "/etc/ssl/kmeweb/privkey.pem", str(key)
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n{site}\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "client_max_body_size 21m" in site  # the app's 20 MB CSV limit plus the form
