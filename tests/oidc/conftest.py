"""Chromium for the test provider's own tests, launched as tests/browser launches it (Debian's
Chromium at KMEWEB_CHROMIUM; a missing one fails the run)."""

from tests.browser.conftest import browser_type_launch_args  # noqa: F401
