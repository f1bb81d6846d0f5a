"""Mail protocol layer: SMTP, IMAP4 and POP3 clients and the connectivity test. No Django.

Each client is a context manager taking a `MailSettings` and the plaintext secret:

    with IMAPClient(settings, password) as imap: ...
    with POP3Client(settings, password) as pop: ...
    with SMTPClient(settings, password) as smtp: smtp.send(sender=..., recipients=[...], message=raw)
    report = run_probe(settings, password)   # the connectivity test
"""
from .errors import (
    AuthenticationFailed,
    ConnectError,
    InsecureAuthRefused,
    MailError,
    MechanismUnavailable,
    ProtocolError,
    SMTPReplyError,
    TLSError,
)
from .imap import IMAPClient
from .imap_commands import Folder, FolderInfo
from .pop3 import POP3Client
from .probe import ProbeReport, ProbeStep, run_probe
from .settings import AUTHENTICATIONS, PROTECTIONS, PROTOCOLS, MailSettings, default_port
from .smtp import SMTPClient
from .smtp_send import SendResult
from .tls import TLSInfo, make_ssl_context

__all__ = [
    "AUTHENTICATIONS", "PROTECTIONS", "PROTOCOLS", "MailSettings", "default_port",
    "MailError", "ConnectError", "TLSError", "InsecureAuthRefused", "MechanismUnavailable",
    "AuthenticationFailed", "ProtocolError", "SMTPReplyError",
    "TLSInfo", "make_ssl_context",
    "SMTPClient", "SendResult", "IMAPClient", "Folder", "FolderInfo", "POP3Client",
    "ProbeReport", "ProbeStep", "run_probe",
]
