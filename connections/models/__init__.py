"""TenantMail's models, one module per concept."""
from .base import Authentication, ConnectionBase, Protection, Protocol, Readiness
from .credentials import CredentialDeployment, CredentialStatus, UserCredential
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
    AlertSettings,
    AlertState,
    Heartbeat,
    MetricCounter,
    OutboundSendState,
    Severity,
    WebhookDelivery,
)
from .messages import Attachment, StoredMessage
from .outbound import OutboundConnection, OutboxAttachment, OutboxMessage, OutboxStatus
from .tenancy import ROLE_RANK, Membership, Role, Tenant, TenantOwned

__all__ = [
    "Alert", "AlertSettings", "AlertState", "Heartbeat", "MetricCounter", "OutboundSendState", "Severity",
    "WebhookDelivery",
    "Attachment", "Authentication", "ConnectionBase", "CredentialDeployment", "CredentialStatus", "InboundConnection",
    "MailboxLock", "Membership", "OutboundConnection", "OutboxAttachment", "OutboxMessage",
    "OutboxStatus", "PollOutcome", "PollRun", "PostProcessing", "Protection", "Protocol",
    "ROLE_RANK", "Readiness", "Role", "ScheduleKind", "Selection", "StoredMessage", "Tenant",
    "TenantOwned", "UserCredential",
]
