"""Sign-in timing: does a wrong password for a known account take as long as any password
for an unknown one? (If not, timing tells an attacker which accounts exist.)

Run from the repo root: `.venv/bin/python bench/login_timing.py [--rounds N]`.
Prints on stdout:
  login_known_wrong_ms: median time of a sign-in with a wrong password for a real account
  login_unknown_ms: median time of a sign-in for an account that does not exist
  login_unknown_vs_known_ratio: the second over the first (1.0 is the goal; 3x would leak)
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from _env import TMP as _TMP

from kmeweb import create_app
from kmeweb.extensions import db

TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{_TMP.name}/bench.sqlite",
            "RATELIMIT_ENABLED": False,
        }
    )
    with app.app_context():
        from flask_migrate import upgrade

        from kmeweb.auth import services

        upgrade()
        services.create_admin(db.session, "known@example.com", "a long enough passphrase")
        db.session.commit()
    client = app.test_client()
    token = TOKEN_RE.search(client.get("/auth/login").get_data(as_text=True)).group(1)

    def attempt(email: str) -> float:
        data = {"email": email, "password": "wrong password here", "csrf_token": token}
        start = time.perf_counter()
        response = client.post("/auth/login", data=data)
        elapsed = time.perf_counter() - start
        assert response.status_code == 422, response.status_code
        return elapsed * 1000

    known, unknown = [], []
    attempt("known@example.com")  # warm-up
    for n in range(args.rounds):  # interleaved, so machine noise hits both alike
        known.append(attempt("known@example.com"))
        unknown.append(attempt(f"nobody{n}@example.com"))
    known_ms, unknown_ms = statistics.median(known), statistics.median(unknown)
    print(f"login_known_wrong_ms: {known_ms:.1f} ms")
    print(f"login_unknown_ms: {unknown_ms:.1f} ms")
    print(f"login_unknown_vs_known_ratio: {unknown_ms / known_ms:.2f} x")


if __name__ == "__main__":
    main()
