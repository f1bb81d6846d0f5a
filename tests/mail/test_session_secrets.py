"""The secret never outlives the login: not in exception text, formatted tracebacks, the
locals of the frames an error passes through, nor on the client object afterwards."""
from __future__ import annotations

import traceback

import pytest

from connections.mail import IMAPClient, POP3Client, SMTPClient
from connections.mail.errors import AuthenticationFailed

pytestmark = pytest.mark.mailservers

CLIENTS = {"imap": IMAPClient, "pop3": POP3Client, "smtp": SMTPClient}
CASES = [
    ("imap", "plain", None), ("imap", "plain", "LOGIN"), ("imap", "encrypted", None),
    ("pop3", "plain", None), ("pop3", "plain", "PLAIN"), ("pop3", "encrypted", None), ("pop3", "encrypted", "APOP"),
    ("smtp", "plain", None), ("smtp", "plain", "LOGIN"), ("smtp", "encrypted", None),
]


def _frames_mention(exc: BaseException, secret: str) -> list[str]:
    found = []
    for frame, _lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == __file__:
            continue  # the test itself holds the secret, of course
        for name, value in frame.f_locals.items():
            if isinstance(value, (str, bytes)) and (secret in str(value) or secret.encode() in (value if isinstance(value, bytes) else b"")):
                found.append(f"{frame.f_code.co_name}:{name}")
    return found


@pytest.mark.parametrize("protocol, authentication, mechanism", CASES)
def test_wrong_secret_leaves_no_trace(mail_servers, protocol, authentication, mechanism):
    address, _ = mail_servers.add_user()
    secret = "Wr0ng-Sécret-" + protocol
    settings = mail_servers.mail_settings(protocol=protocol, protection="ssl_tls", authentication=authentication, username=address)
    client = CLIENTS[protocol](settings, secret, mechanism=mechanism)
    with pytest.raises(AuthenticationFailed) as info:
        client.__enter__()
    text = "".join(traceback.format_exception(info.value))
    assert secret not in text and secret not in repr(info.value)
    assert _frames_mention(info.value, secret) == []
    assert client._password is None


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_client_forgets_the_secret_after_login(mail_servers, protocol):
    address, password = mail_servers.add_user()
    settings = mail_servers.mail_settings(protocol=protocol, protection="ssl_tls", authentication="plain", username=address)
    with CLIENTS[protocol](settings, password) as client:
        assert client._password is None
        assert password not in repr(vars(client))
