"""Fixtures shared by the directory service tests."""

from tests.factories import admin  # noqa: F401
