"""Mail protocol layer: SMTP, IMAP4 and POP3 clients. No Django imports.

Each client is a context manager taking a `MailSettings` and the plaintext secret.
"""
from .settings import AUTHENTICATIONS, PROTECTIONS, PROTOCOLS, MailSettings, default_port

__all__ = ["AUTHENTICATIONS", "PROTECTIONS", "PROTOCOLS", "MailSettings", "default_port"]
