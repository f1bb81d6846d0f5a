"""A Django email backend: `send_mail()` / `EmailMessage.send()` go into a tenant's outbox.

    EMAIL_BACKEND = "connections.backends.TenantMailBackend"
    TENANTMAIL_EMAIL_TENANT = "acme"            # tenant slug
    TENANTMAIL_EMAIL_CONNECTION = "smtp-main"   # outbound connection name

or per call:

    with get_connection("connections.backends.TenantMailBackend",
                        tenant="acme", connection="smtp-main") as backend:
        EmailMessage(..., connection=backend).send()

All messages of one `send_messages()` call are checked and queued together, in one
transaction, through `connections.services.outbound.enqueue.enqueue_many` (the workers send
them); it returns how many were queued. From, To, Cc, Bcc, Reply-To, extra headers, HTML
alternatives and attachments are kept. A message with a `template` attribute (and a
`context` dict) gets its subject and bodies from the tenant's message template of that name.
"""
from __future__ import annotations

import mimetypes
from email.mime.base import MIMEBase
from typing import Any, Sequence

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from connections.conf import conf
from .errors import ConfigurationError, ValidationError
from .services.access.lookup import find_connection
from .services.outbound import enqueue
from .services.outbound.mime import AttachmentIn

# Django's own placeholder From: a message that did not choose a From gets the connection's.
_DJANGO_DEFAULT_FROM = "webmaster@localhost"


class TenantMailBackend(BaseEmailBackend):
    def __init__(
        self,
        fail_silently: bool = False,
        *,
        tenant: str | None = None,
        connection: str | None = None,
        priority: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.tenant = tenant or conf.TENANTMAIL_EMAIL_TENANT or ""
        self.connection_name = connection or conf.TENANTMAIL_EMAIL_CONNECTION or ""
        self.priority = priority
        self._connection_id: int | None = None
        self._has_default_recipients = False

    def _resolve(self) -> int:
        if self._connection_id is None:
            if not self.tenant or not self.connection_name:
                raise ConfigurationError(
                    "TenantMailBackend does not know which outbound connection to use.",
                    hint="set TENANTMAIL_EMAIL_TENANT and TENANTMAIL_EMAIL_CONNECTION, or pass tenant= and "
                    "connection= to get_connection()",
                )
            connection = find_connection(tenant=self.tenant, name=self.connection_name, kind="outbound")
            self._has_default_recipients = bool(
                (connection.default_to + connection.default_cc + connection.default_bcc).strip())
            self._connection_id = connection.pk
        return self._connection_id

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        try:
            connection_id = self._resolve()
        except ConfigurationError:
            if not self.fail_silently:
                raise
            return 0
        items = []
        for message in email_messages:
            if not message.recipients() and not self._has_default_recipients:
                continue
            try:
                items.append({"priority": self.priority, **_fields(message)})
            except (ValidationError, ConfigurationError):
                if not self.fail_silently:
                    raise
        try:
            result = enqueue.enqueue_many(connection_id=connection_id, messages=items, skip_invalid=self.fail_silently)
        except (ValidationError, ConfigurationError):
            if not self.fail_silently:
                raise
            return 0
        return len(result.messages)


def _fields(message: EmailMessage) -> dict[str, Any]:
    """The keyword arguments of enqueue for a Django EmailMessage."""
    headers = {k: v for k, v in (message.extra_headers or {}).items()}
    lowered = {k.lower(): k for k in headers}
    from_address = message.from_email
    if "from" in lowered:  # Django lets a From header override from_email in the message
        from_address = headers.pop(lowered["from"])
    if not from_address or from_address == _DJANGO_DEFAULT_FROM:
        from_address = None  # the connection's default From
    reply_to: list[str] | None = list(message.reply_to) or None
    if "reply-to" in lowered:
        reply_to = [headers.pop(lowered["reply-to"])]
    # Django lets To/Cc headers differ from the envelope; here the recipients are the truth.
    for name in ("to", "cc"):
        if name in lowered:
            headers.pop(lowered[name])

    text, html = "", ""
    body = message.body or ""
    if getattr(message, "content_subtype", "plain") == "html":
        html = body
    else:
        text = body
    for alternative in getattr(message, "alternatives", None) or []:
        content, mimetype = alternative[0], alternative[1]
        if mimetype == "text/html" and not html:
            html = content if isinstance(content, str) else content.decode("utf-8")
        elif mimetype == "text/plain" and not text:
            text = content if isinstance(content, str) else content.decode("utf-8")
        else:
            raise ValidationError(
                f"An alternative of type {mimetype} cannot be sent through TenantMail.",
                hint="use text/plain and text/html alternatives, and attachments for anything else",
            )

    attachments = [_attachment(a, message.encoding or settings.DEFAULT_CHARSET) for a in message.attachments]
    template = {}
    if getattr(message, "template", None):
        template = {"template": message.template, "context": dict(getattr(message, "context", None) or {})}
    return dict(**template,
        from_address=from_address, to=list(message.to), cc=list(message.cc), bcc=list(message.bcc),
        reply_to=reply_to, subject=str(message.subject or ""), text=text, html=html,
        attachments=attachments, extra_headers={k: str(v) for k, v in headers.items()},
    )


def _attachment(item: Any, encoding: str) -> AttachmentIn:
    if isinstance(item, MIMEBase):
        name = item.get_filename() or "attachment"
        if item.get_content_maintype() == "message" and item.is_multipart():
            content = item.get_payload(0).as_bytes()
        else:
            content = item.get_payload(decode=True) or b""
        return AttachmentIn(name, content, item.get_content_type())
    filename, content, mimetype = item[0], item[1], item[2]
    if hasattr(content, "as_bytes"):  # a message/rfc822 attachment given as a message
        content = content.as_bytes()
    elif isinstance(content, str):
        content = content.encode(encoding)
    if not mimetype:
        mimetype = mimetypes.guess_type(filename or "")[0] or "application/octet-stream"
    return AttachmentIn(filename or "attachment", content, mimetype)
