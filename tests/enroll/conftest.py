import pytest

from tests.factories import admin  # noqa: F401
from tests.sync_fixtures import with_sync_config


@pytest.fixture
def app_config(app_config: dict) -> dict:
    return with_sync_config(app_config)
