"""TenantMail's models, one module per concept."""
from .base import Authentication, ConnectionBase, Protection, Protocol, Readiness
from .credentials import OAUTH2_KINDS, CredentialDeployment, CredentialKind, CredentialStatus, UserCredential
from .inbound import (
    InboundConnection,
    MailboxLock,
    PollOutcome,
    PollRun,
    PostProcessing,
    ScheduleKind,
    Selection,
)
from .monitoring import (
    Alert,
    AlertDelivery,
    AlertSettings,
    AlertState,
    Heartbeat,
    MetricCounter,
    OutboundSendState,
    Severity,
)
from .oauth2 import OAuth2Authorization, OAuth2AuthorizationCode, OAuth2ClientCredentials, OAuth2Token
from .proxy import ProxyProfile, ProxyType
from .push import PushLease, PushState
from .messages import Attachment, StoredMessage
from .outbound import (
    BodyCharset, BodyType, OutboundConnection, OutboxAttachment, OutboxMessage, OutboxStatus, OutboxTemplate,
    SendProgress, TransferEncoding,
)
from .tenancy import ROLE_RANK, Membership, Role, Tenant, TenantOwned
from .api import ApiIdempotencyKey, ApiScope, ApiToken  # noqa: E402 (after outbound)
from .webhooks import DeliveryStatus, Webhook, WebhookDelivery, WebhookState  # noqa: E402

__all__ = [
    "Alert", "AlertDelivery", "AlertSettings", "AlertState", "Heartbeat", "MetricCounter", "OutboundSendState",
    "Severity",
    "Attachment", "Authentication", "ConnectionBase", "CredentialDeployment", "CredentialStatus", "InboundConnection",
    "MailboxLock", "Membership", "OutboundConnection", "OutboxAttachment", "OutboxMessage",
    "OutboxStatus", "PollOutcome", "ProxyProfile", "ProxyType", "PushLease", "PushState", "PollRun", "PostProcessing", "Protection", "Protocol",
    "ROLE_RANK", "Readiness", "Role", "ScheduleKind", "Selection", "StoredMessage", "Tenant",
    "TenantOwned", "UserCredential", "OAUTH2_KINDS", "CredentialKind", "OAuth2Authorization",
    "OAuth2AuthorizationCode", "OAuth2ClientCredentials", "OAuth2Token",
    "BodyCharset", "BodyType", "OutboxTemplate", "SendProgress", "TransferEncoding",
    "ApiIdempotencyKey", "ApiScope", "ApiToken", "DeliveryStatus", "Webhook", "WebhookDelivery", "WebhookState",
]
