"""Fixtures shared by the profiles service tests."""

from tests.factories import admin  # noqa: F401
