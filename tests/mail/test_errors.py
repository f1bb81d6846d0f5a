"""The error classes of connections/mail/errors.py."""
from __future__ import annotations

from connections.errors import TenantMailError
from connections.mail import TLSError
from connections.mail.errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MailError,
    MechanismUnavailable,
    ProtocolError,
    SMTPReplyError,
)


def test_error_hierarchy_and_transience():
    for cls in (ConnectError, TLSError, InsecureAuthRefused, MechanismUnavailable, AuthenticationFailed,
                ProtocolError, SMTPReplyError):
        assert issubclass(cls, MailError) and issubclass(cls, TenantMailError)
    assert ConnectError("x").transient is True and ConnectError("x").step == "tcp"
    assert SMTPReplyError("x", code=451).transient is True
    assert SMTPReplyError("x", code=550).transient is False
    assert MechanismUnavailable("x", offered=["PLAIN"]).offered == ["PLAIN"]
    err = AuthenticationFailed("bad login", hint="check it")
    assert str(err) == "bad login (hint: check it)" and err.step == "auth"
