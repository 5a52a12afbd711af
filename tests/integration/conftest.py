"""Fixtures shared by the integration service tests."""

from tests.factories import admin  # noqa: F401
