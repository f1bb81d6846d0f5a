import pytest
from django.conf import settings


@pytest.mark.smoke
def test_settings_load():
    assert settings.FERNET_KEYS
    assert settings.INSTALLED_APPS[-1].startswith("connections")
