"""Fixtures shared by the routing rules tests."""

from tests.factories import admin  # noqa: F401
