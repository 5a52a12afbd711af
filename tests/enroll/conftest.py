from tests.factories import admin  # noqa: F401
