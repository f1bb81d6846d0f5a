"""The schema of a configuration file (contract: docs/config.md), declared with pydantic:
one `Entry` per kind of list entry, each field a YAML key (its alias) filling the model field
of its name. The key names, their order (the export's) and their values are kept exactly;
new keys may be added. The capabilities declare their own parts (oauth2.py, proxies.py,
webhooks.py; alerts: services/monitoring/alerts_config.py).

The order of the fields is the order of the keys: a class's own fields come after those of
its bases, and of the bases the last listed comes first (pydantic follows the MRO backwards).
"""
from typing import Annotated

from pydantic import Field

from ....models import (
    Authentication,
    BodyCharset,
    BodyType,
    InboundConnection,
    OutboundConnection,
    PostProcessing,
    Protection,
    Protocol,
    Selection,
    Tenant,
    TransferEncoding,
    UserCredential,
)
from . import proxies, schedules
from .fields import (UNSET, Entry, Extra, Flag, Integer, NullableInteger, OffAsText, RequiredText, Text,
                     nullable_text, one_of)
from .oauth2 import OAuth2Keys

POP3_POST_PROCESSING = (PostProcessing.DELETE.value, PostProcessing.KEEP.value)
ARCHIVE_POST_PROCESSING = (PostProcessing.MOVE.value, PostProcessing.MOVE_AND_MARK_READ.value)
IMAP_ONLY_KEYS = ("folder", "selection", "push")


class TenantEntry(Entry):
    django_model = Tenant
    slug: RequiredText
    name: RequiredText
    active: Flag = UNSET
    credentials: Extra = None
    proxies: Extra = None
    outbound: Extra = None
    inbound: Extra = None
    alerts: Extra = None  # services/monitoring/alerts_config.py


class _CredentialColumns(Entry):
    name: RequiredText
    description: nullable_text() = UNSET
    username: RequiredText = Field(alias="user")
    password_env: Extra = None
    deploy: Extra = None


class CredentialEntry(OAuth2Keys, _CredentialColumns):
    django_model = UserCredential


class _Named(Entry):
    name: RequiredText


class _ConnectionColumns(Entry):
    """The keys every connection has (after its name and, inbound, its protocol)."""

    host: RequiredText
    port: NullableInteger = UNSET
    protection: Annotated[Text, OffAsText, one_of(Protection.values)] = UNSET
    authentication: Annotated[Text, one_of(Authentication.values)] = UNSET
    credential_name: nullable_text() = Field(UNSET, alias="credential")
    timeout: Integer = UNSET
    verify_certificate: Flag = UNSET
    trusted_ca: nullable_text() = UNSET
    allow_plain_without_tls: Flag = UNSET
    sasl_mechanism: nullable_text(Annotated[Text, one_of(("", "xoauth2", "oauthbearer"))]) = UNSET


class OutboundEntry(_ConnectionColumns, _Named):
    django_model = OutboundConnection
    grouped = {"proxy": proxies.INLINE_FIELDS}
    default_from: RequiredText = Field(alias="from")
    default_reply_to: nullable_text() = Field(UNSET, alias="reply_to")
    max_per_session: Integer = UNSET
    rate_limit_per_minute: NullableInteger = UNSET
    enabled: Flag = UNSET
    # Receiver attributes and crash recovery (issue 19; services/outbound/attributes.py).
    default_to: nullable_text() = Field(UNSET, alias="to")
    default_cc: nullable_text() = Field(UNSET, alias="cc")
    default_bcc: nullable_text() = Field(UNSET, alias="bcc")
    default_subject: nullable_text() = Field(UNSET, alias="subject")
    body_type: nullable_text(Annotated[Text, one_of(BodyType.values)]) = UNSET
    body_charset: Annotated[Text, one_of(BodyCharset.values)] = UNSET
    transfer_encoding: Annotated[Text, one_of(TransferEncoding.values)] = UNSET
    resend_uncertain: Flag = UNSET
    keep_sent_days: NullableInteger = UNSET
    trusted_ca_file: Extra = None  # services/pem.py
    proxy: Extra = None  # proxies.py


class _InboundHead(_Named):
    protocol: Annotated[Text, one_of((Protocol.IMAP.value, Protocol.POP3.value))] = UNSET


class InboundEntry(_ConnectionColumns, _InboundHead):
    django_model = InboundConnection
    grouped = {"schedule": schedules.SCHEDULE_FIELDS, "proxy": proxies.INLINE_FIELDS}
    folder: Text = UNSET
    selection: Annotated[Text, one_of(Selection.values)] = UNSET
    max_messages: Integer = UNSET
    max_message_size: Integer = UNSET
    post_processing: Annotated[Text, one_of(PostProcessing.values)] = UNSET
    archive_folder: nullable_text() = UNSET
    push: Flag = UNSET
    timezone: Text = UNSET
    lock_timeout: Integer = UNSET
    enabled: Flag = UNSET
    keep_days: NullableInteger = UNSET
    schedule: Extra = None  # one key, several model fields: schedules.py
    trusted_ca_file: Extra = None  # services/pem.py
    webhook: Extra = None  # webhooks.py
    proxy: Extra = None  # proxies.py


TENANT_KEYS = TenantEntry.keys()
CREDENTIAL_KEYS = CredentialEntry.keys()
OUTBOUND_KEYS = OutboundEntry.keys()
INBOUND_KEYS = InboundEntry.keys()

# Connection fields behind the one `proxy:` key (a profile name or an inline proxy).
PROXY_FIELDS = (*proxies.INLINE_FIELDS, "proxy_profile")
