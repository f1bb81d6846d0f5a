"""Fixtures of the protocol-layer tests: the real Dovecot/Postfix fixture, and a scripted
socket server of our own for faults a real server will not produce on demand."""
from __future__ import annotations

import pytest

import tests.conftest as _root

# The real servers come from tests/mailservers.py (a plugin the root conftest loads). Import the
# fixtures here only if the root conftest does not load it yet, so they are defined once.
if "tests.mailservers" not in getattr(_root, "pytest_plugins", ()):
    from tests.mailservers import mail_servers, mailbox  # noqa: F401

from .fakeserver import ScriptedServer


@pytest.fixture
def scripted():
    """Factory: scripted(handler) -> a running ScriptedServer; all are stopped after the test."""
    servers: list[ScriptedServer] = []

    def start(handler) -> ScriptedServer:
        server = ScriptedServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

