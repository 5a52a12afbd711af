"""Fixtures shared by the devices service tests."""

from tests.factories import admin  # noqa: F401
