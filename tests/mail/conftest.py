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


_last_map_mtime = 0.0


def new_user(mail_servers, **kwargs) -> tuple[str, str]:
    """mail_servers.add_user(), plus a strictly newer mtime on Postfix's recipient map.

    Postfix daemons notice a changed hash table by its mtime in whole seconds, so a user added
    in the same second as the previous one may be unknown to a running smtpd. Until the fixture
    handles that itself, every test here creates users through this helper.
    """
    import os
    import time

    global _last_map_mtime
    address, password = mail_servers.add_user(**kwargs)
    db = mail_servers.root / "etc" / "vmailbox.db"
    if db.exists():
        stamp = max(time.time(), _last_map_mtime) + 1
        os.utime(db, (stamp, stamp))
        _last_map_mtime = stamp
    return address, password
