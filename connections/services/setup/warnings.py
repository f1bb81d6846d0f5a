"""What an operator should know about a connection's settings, in two kinds:

- `security_warnings(connection=)`: settings that weaken transport security (plain login
  without TLS, certificate not checked, protection off or optional), shown with every
  connectivity test result; `short_warnings` says the same in a few words (list columns).
- `processing_warnings(connection=)` (inbound): selection / post-processing combinations of an inbound
  connection that re-process mail or surprise operators, shown when it is saved.
"""
from __future__ import annotations

from ...models import Authentication, InboundConnection, PostProcessing, Protocol, Selection
from ..access.lookup import Connection


def security_warnings(*, connection: Connection) -> list[str]:
    """Settings an operator should know are risky (shown with every test result)."""
    out = []
    if not connection.enabled:
        out.append("the connection is disabled: it is tested, but no poll or send runs until it is enabled.")
    if connection.allow_plain_without_tls and connection.authentication == Authentication.PLAIN:
        out.append(
            "'allow plain login without TLS' is on: the password may cross the network readable. "
            "Plain credentials are only for use together with SSL/TLS."
        )
    elif connection.allow_plain_without_tls:
        out.append(
            "'allow plain login without TLS' is on (unused with "
            f"{connection.get_authentication_display()}): turn it off unless you need it."
        )
    if not connection.verify_certificate and connection.protection != "off":
        out.append(
            "server certificate validation is off: the connection is encrypted but the server's "
            "identity is not checked."
        )
    if connection.protection == "off" and connection.authentication != Authentication.NONE:
        out.append("protection is Off: mails, user name and commands travel unencrypted.")
    if connection.protection == "starttls_optional":
        out.append(
            "protection is STARTTLS optional: when the server does not offer STARTTLS the connection "
            "continues unencrypted (a plain password is then refused); STARTTLS mandatory fails instead."
        )
    return out


def short_warnings(*, connection: Connection) -> list[str]:
    """The warnings of `security_warnings` in a few words each (the admin's list column)."""
    out = []
    if connection.allow_plain_without_tls:
        out.append("plain login without TLS allowed")
    if connection.protection != "off" and not connection.verify_certificate:
        out.append("certificate not validated")
    if connection.protection == "off" and connection.authentication != Authentication.NONE:
        out.append("unencrypted")
    return out


def processing_warnings(*, connection: InboundConnection) -> list[str]:
    """Inbound selection / post-processing combinations that work but re-process mail or surprise
    operators (shown when an inbound connection is saved and on its page)."""
    out = []
    if connection.protocol == Protocol.IMAP:
        if connection.selection == Selection.ALL and connection.post_processing == PostProcessing.MARK_READ:
            out.append(
                "Mark as read with selection All re-processes mail on every poll: read mails stay in the "
                "folder and are searched again each time (already stored ones are skipped by UID, but the "
                "work grows with the folder). Choose 'Only unread', or Move/Delete."
            )
        if connection.selection == Selection.ALL and connection.post_processing == PostProcessing.KEEP:
            out.append(
                "Keep unchanged with selection All: every poll lists the whole folder and skips what is "
                "stored. Fine for small folders; large ones are better moved to an archive folder."
            )
        if connection.selection == Selection.UNREAD and connection.post_processing == PostProcessing.KEEP:
            out.append(
                "Keep unchanged with Only unread: mails a person reads in their mail program before the "
                "poll are never fetched."
            )
    if connection.protocol == Protocol.POP3 and connection.post_processing == PostProcessing.KEEP:
        out.append("POP3 Keep on server: the mailbox grows; every poll lists all UIDLs.")
    if connection.max_message_size < 1024 * 1024:
        out.append("The max message size is under 1 MB: most mails with attachments will be stored as headers only.")
    return out
