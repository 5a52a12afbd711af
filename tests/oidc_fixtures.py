"""OpenID Connect provider fixtures (a pytest plugin loaded by tests/conftest.py).

A real provider, not a stub: node's certified `oidc-provider` package runs
tests/oidc/provider.mjs on a free loopback port, one process for the whole run, with the
client `kmeweb` / `kmeweb-test-secret` (any http://127.0.0.1:<port>/... redirect URI),
authorization code with PKCE (S256), and its own login and consent pages. `make test` installs
the package into tests/oidc/node_modules (scripts/services.py node); without it, or without
node, the fixture fails and says so (never skips).

`oidc_provider` gives each test the provider with no accounts, no refusals and no session:

    oidc_provider.add_account("alice", "pw", "alice@example.com", "Alice", ["kme-admins"])
    ...  # the browser reaches the provider's login page
    sign_in_at_provider(page, "alice", "pw")

A test may change the accounts between two sign-ins (`set_accounts`), refuse a user at the
authorization step (`refuse`), spoil the next ID token (`misbehave`), and stop, start or
restart the provider on the same port, with a new signing key by default (`restart`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from playwright.sync_api import Page

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
LOCK_FILE = OIDC_DIR / "package-lock.json"
# Written by scripts/services.py after `npm ci`: the digest of the lock it installed.
INSTALLED_STAMP = OIDC_DIR / "node_modules" / ".kmeweb-installed"
NODE = os.environ.get("KMEWEB_NODE", "node")

CLIENT_ID = "kmeweb"
CLIENT_SECRET = "kmeweb-test-secret"
# One-shot defects of the next token response (see tests/oidc/provider.mjs).
MISBEHAVIOURS = ("tamper", "expired", "wrong_aud", "wrong_iss", "wrong_nonce", "alg_none")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CONSENT_URL = re.compile(r"/interaction/[^/]+/consent$")


def installation_problem() -> str | None:
    """Why the provider cannot run here (node or the locked package missing), or None."""
    if shutil.which(NODE) is None:
        return f"node is required for the OpenID provider tests ({NODE} not found): run make test"
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    installed = INSTALLED_STAMP.read_text().strip() if INSTALLED_STAMP.exists() else ""
    if installed != digest:
        return (
            f"the OpenID provider's packages are missing or older than {LOCK_FILE.name} "
            f"in {OIDC_DIR}: run make test (it runs npm ci there)"
        )
    return None


@dataclass
class OidcAccount:
    """A user of the provider; `sub` (the subject kmeweb should bind to) defaults to login."""

    login: str
    password: str
    email: str
    name: str
    groups: list[str] = field(default_factory=list)
    email_verified: bool = True
    sub: str | None = None


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class OidcProvider:
    """One node process serving tests/oidc/provider.mjs, and what the tests have set on it.

    The accounts and refusals live here too, so a start or restart puts them back; a pending
    misbehaviour does not survive a restart.
    """

    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._log = workdir / "provider.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._key_generation = 0
        self.accounts: list[OidcAccount] = []
        self.refused: set[str] = set()
        self.issuer = ""
        self.kid = ""

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the provider (on its earlier port, if it had one) with its current key."""
        if self.running:
            return
        self.stop()  # a provider that died on its own: close what is left of it
        key_file = self._workdir / f"signing-key-{self._key_generation}.json"
        log = self._log.open("ab")
        command = [NODE, str(PROVIDER_SCRIPT), "--port", str(self._port)]
        command += ["--key-file", str(key_file), "--exit-with-stdin"]
        # stdin is a pipe the provider watches: if this process dies, so does the provider.
        process = subprocess.Popen(
            command, cwd=OIDC_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
        )
        log.close()
        self._process = process
        ready = self._ready_line(process)
        if ready is None:
            self.stop()
            raise RuntimeError(
                f"the OpenID provider did not start within {START_TIMEOUT_S:.0f} s:\n"
                + _tail(self._log)
            )
        self.issuer, self.kid = ready["issuer"], ready["kid"]
        self._port = int(self.issuer.rsplit(":", 1)[1])
        self._control("PUT", "accounts", [asdict(a) for a in self.accounts])
        self._control("PUT", "refused", sorted(self.refused))

    @staticmethod
    def _ready_line(process: subprocess.Popen[bytes]) -> dict[str, Any] | None:
        """The one JSON line the provider prints once it listens (None if it never does)."""
        stdout: IO[bytes] = process.stdout  # type: ignore[assignment]
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if selector.select(timeout=left):
                    line = stdout.readline()
                    return json.loads(line) if line else None
        return None

    def stop(self) -> None:
        """Stop the provider: its port stops answering (discovery unreachable)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()  # type: ignore[union-attr]
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]

    def restart(self, rotate_key: bool = True) -> None:
        """Stop and start on the same port; with rotate_key, a new signing key (a new kid)."""
        self.stop()
        if rotate_key:
            self._key_generation += 1
        self.start()

    def reset(self) -> None:
        """No accounts, refusals, misbehaviour, sessions or grants (started if stopped)."""
        self.accounts, self.refused = [], set()
        self.start()
        self._control("POST", "reset", {})

    def set_accounts(self, accounts: Iterable[OidcAccount | dict[str, Any]]) -> None:
        """Replace every account (a user left out can no longer sign in)."""
        self.accounts = [a if isinstance(a, OidcAccount) else OidcAccount(**a) for a in accounts]
        self._control("PUT", "accounts", [asdict(a) for a in self.accounts])

    def add_account(
        self,
        login: str,
        password: str,
        email: str,
        name: str,
        groups: Iterable[str],
        email_verified: bool = True,
        sub: str | None = None,
    ) -> OidcAccount:
        """Add one account, or replace the one with this login."""
        account = OidcAccount(login, password, email, name, list(groups), email_verified, sub)
        self.set_accounts([a for a in self.accounts if a.login != login] + [account])
        return account

    def refuse(self, login: str) -> None:
        """The provider refuses this user: after a right password the browser goes back to
        the redirect_uri with error=access_denied and the state."""
        self.refused.add(login)
        self._control("PUT", "refused", sorted(self.refused))

    def allow(self, login: str) -> None:
        """Take back `refuse(login)`."""
        self.refused.discard(login)
        self._control("PUT", "refused", sorted(self.refused))

    def misbehave(self, mode: str) -> None:
        """Spoil the ID token of the next token response only (one of MISBEHAVIOURS)."""
        if mode not in MISBEHAVIOURS:
            raise ValueError(f"mode must be one of {', '.join(MISBEHAVIOURS)}")
        self._control("POST", "misbehave", {"mode": mode})

    def _control(self, method: str, name: str, body: Any) -> dict[str, Any]:
        response = requests.request(method, f"{self.issuer}/__test/{name}", json=body, timeout=5)
        if response.status_code != 200:
            raise RuntimeError(f"{method} /__test/{name}: {response.status_code} {response.text}")
        return response.json()


def sign_in_at_provider(page: Page, login: str, password: str) -> None:
    """Sign in on the provider's login page the browser is on, and continue past its consent
    page when it shows one. Returns once the browser has left the provider (back at the
    redirect_uri) or, after a wrong password, is on the login page again with the error."""
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    if CONSENT_URL.search(page.url):
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()


@pytest.fixture(scope="session")
def oidc_provider_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The provider process for the whole run, stopped at the end whatever happened."""
    problem = installation_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    provider = OidcProvider(tmp_path_factory.mktemp("oidc-provider"))
    try:
        provider.start()
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def oidc_provider(oidc_provider_server: OidcProvider) -> OidcProvider:
    """The provider, reset for this test: no accounts, refusals, misbehaviour or sessions."""
    oidc_provider_server.reset()
    return oidc_provider_server
