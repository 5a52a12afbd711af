#!/usr/bin/env python3
"""Make sure Redis, PostgreSQL, Chromium and node are there for `make run` / `make test`.

Each command prints the URL (or path) to use on stdout (diagnostics go to stderr) and
exits non-zero with a one-line reason when the service cannot be had.
Private servers it starts live under .run/ and are stopped by `stop`.
Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def apt_install(package: str) -> bool:
    if not IS_ROOT or shutil.which("apt-get") is None:
        return False
    say(f"installing Debian package {package} ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    result = subprocess.run(["apt-get", "install", "-y", "-q", package], **quiet)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], **quiet)
        result = subprocess.run(["apt-get", "install", "-y", "-q", package], **quiet)
    return result.returncode == 0


def wait_for(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def ensure_redis(url: str, private_port: int, db: int | None) -> str:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if redis_ping(host, port):
        return url
    private = f"redis://127.0.0.1:{private_port}/{db if db is not None else parsed.path[1:] or 0}"
    if redis_ping("127.0.0.1", private_port):
        return private
    if shutil.which("redis-server") is None and not apt_install("redis-server"):
        raise SystemExit(
            f"no Redis answers at {url}; install one (apt-get install redis-server) "
            "or set REDIS_URL"
        )
    RUN.mkdir(exist_ok=True)
    say(f"no Redis at {host}:{port}; starting a private redis-server on {private_port}")
    subprocess.run(
        [
            "redis-server",
            "--port",
            str(private_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(RUN / "redis.pid"),
            "--logfile",
            str(RUN / "redis.log"),
            "--dir",
            str(RUN),
        ],
        check=True,
    )
    if not wait_for(lambda: redis_ping("127.0.0.1", private_port)):
        raise SystemExit(f"the private redis-server did not start; see {RUN / 'redis.log'}")
    return private


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    return None


def ensure_postgres(url: str, private_port: int) -> str:
    parsed = urlparse(url.replace("+psycopg", ""))
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    if answers(host, port):
        return url
    private = f"postgresql+psycopg://postgres@127.0.0.1:{private_port}/postgres"
    if answers("127.0.0.1", private_port):
        return private
    if not IS_ROOT:
        raise SystemExit(
            f"no PostgreSQL answers at {host}:{port}; start one or set TEST_DATABASE_URL"
        )
    if _pg_bin() is None and not apt_install("postgresql"):
        raise SystemExit("PostgreSQL is not installed and apt-get could not install it")
    pg_bin = _pg_bin()
    pg_dir = RUN / "pg"
    say(f"no PostgreSQL at {host}:{port}; starting a private cluster on {private_port}")
    RUN.mkdir(exist_ok=True)
    subprocess.run(["install", "-d", "-o", "postgres", "-g", "postgres", str(pg_dir)], check=True)
    os.chmod(RUN, 0o755)
    as_pg = ["su", "postgres", "-c"]
    if not (pg_dir / "data").exists():
        subprocess.run(
            as_pg + [f"{pg_bin}/initdb -D {pg_dir}/data -A trust -U postgres"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    subprocess.run(
        as_pg
        + [
            f"{pg_bin}/pg_ctl -D {pg_dir}/data -o '-p {private_port} -k {pg_dir} "
            f"-c listen_addresses=127.0.0.1' -l {pg_dir}/log -w start"
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return private


def ensure_chromium(path: str) -> str:
    if Path(path).exists():
        return path
    if not apt_install("chromium") or not Path(path).exists():
        raise SystemExit(f"Chromium is missing at {path}; install Debian's chromium package")
    return path


# The OpenID provider the tests run (tests/oidc): node's oidc-provider 8.x, which runs on
# Debian's node 18 as well as on 20 and 22.
OIDC_DIR = ROOT / "tests" / "oidc"
NODE_MAJOR_MIN = 18


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    try:
        return int(out.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


def ensure_node() -> str:
    """node on PATH (apt-installed with npm when missing) and the test provider's packages
    installed from tests/oidc/package-lock.json: `npm ci` runs only when the lock changed."""
    node = shutil.which("node")
    if node is None and not (apt_install("nodejs") and (node := shutil.which("node"))):
        raise SystemExit("node is missing; install Debian's nodejs and npm packages")
    if _node_major(node) < NODE_MAJOR_MIN:
        raise SystemExit(f"{node} is older than node {NODE_MAJOR_MIN}; install a newer nodejs")
    lock = OIDC_DIR / "package-lock.json"
    stamp = OIDC_DIR / "node_modules" / ".kmeweb-installed"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return node
    npm = shutil.which("npm")
    if npm is None and not (apt_install("npm") and (npm := shutil.which("npm"))):
        raise SystemExit("npm is missing; install Debian's npm package")
    say(f"installing the test OpenID provider's packages (npm ci in {OIDC_DIR}) ...")
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=OIDC_DIR,
        stdout=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise SystemExit(f"npm ci failed in {OIDC_DIR}")
    stamp.write_text(digest + "\n")
    return node


def stop() -> None:
    pid_file = RUN / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
            say("stopped the private redis-server")
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
    pg_data = RUN / "pg" / "data"
    pg_bin = _pg_bin()
    if (pg_data / "postmaster.pid").exists() and pg_bin is not None:
        subprocess.run(
            ["su", "postgres", "-c", f"{pg_bin}/pg_ctl -D {pg_data} -m fast -w stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        say("stopped the private PostgreSQL cluster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("redis")
    r.add_argument("--url", default="redis://127.0.0.1:6379/0")
    r.add_argument("--private-port", type=int, default=6390)
    r.add_argument("--db", type=int, default=None)
    p = sub.add_parser("postgres")
    p.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--private-port", type=int, default=6432)
    c = sub.add_parser("chromium")
    c.add_argument("--path", default="/usr/bin/chromium")
    sub.add_parser("node", help="node, and npm ci of tests/oidc when its lock changed")
    sub.add_parser("stop")
    args = parser.parse_args()
    if args.command == "redis":
        print(ensure_redis(args.url, args.private_port, args.db))
    elif args.command == "postgres":
        print(ensure_postgres(args.url, args.private_port))
    elif args.command == "chromium":
        print(ensure_chromium(args.path))
    elif args.command == "node":
        print(ensure_node())
    else:
        stop()


if __name__ == "__main__":
    main()
