"""Configuration as code: the names of the environment variables that hold the passwords."""
from __future__ import annotations

from connections.services.setup.config import credentials as config_credentials


def test_password_env_names_are_stable_and_valid():
    assert config_credentials.password_env_name("acme", "acme-mailbox") == "ACME_ACME_MAILBOX_PASSWORD"
    assert config_credentials.password_env_name("1st", "a.b") == "_1ST_A_B_PASSWORD"
