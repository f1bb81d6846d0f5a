"""Request and response shapes of the API (they are also the OpenAPI schema)."""
from __future__ import annotations

import base64
import binascii

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    hint = serializers.CharField(required=False)


class AttachmentInfoSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    filename = serializers.CharField(allow_blank=True)
    content_type = serializers.CharField()
    size = serializers.IntegerField()
    inline = serializers.BooleanField()
    url = serializers.CharField()


class MessageItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    connection = serializers.CharField()
    subject = serializers.CharField(allow_blank=True)
    # "from" is a Python keyword: declared below.
    date = serializers.DateTimeField(allow_null=True)
    fetched_at = serializers.DateTimeField()
    has_attachments = serializers.BooleanField()
    purged = serializers.BooleanField()
    url = serializers.CharField()


MessageItemSerializer._declared_fields["from"] = serializers.CharField(allow_blank=True)


class MessagePageSerializer(serializers.Serializer):
    results = MessageItemSerializer(many=True)
    older = serializers.CharField(allow_null=True, help_text="Cursor of the next (older) page.")
    newer = serializers.CharField(allow_null=True, help_text="Cursor of the previous (newer) page.")
    next = serializers.CharField(allow_null=True, help_text="URL of the next (older) page.")
    previous = serializers.CharField(allow_null=True, help_text="URL of the previous (newer) page.")


class MessageDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    tenant = serializers.CharField()
    connection = serializers.CharField()
    to = serializers.ListField(child=serializers.CharField())
    cc = serializers.ListField(child=serializers.CharField())
    reply_to = serializers.CharField(allow_blank=True)
    subject = serializers.CharField(allow_blank=True)
    date = serializers.DateTimeField(allow_null=True)
    message_id = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField()
    fetched_at = serializers.DateTimeField()
    parsed = serializers.BooleanField()
    purged = serializers.BooleanField()
    text = serializers.CharField(allow_blank=True)
    html = serializers.CharField(allow_blank=True, help_text="As received: NOT sanitized.")
    problems = serializers.ListField(child=serializers.JSONField())
    attachments = AttachmentInfoSerializer(many=True)
    raw_url = serializers.CharField()
    url = serializers.CharField()


MessageDetailSerializer._declared_fields["from"] = serializers.CharField(allow_blank=True)


class OutboxAttachmentSerializer(serializers.Serializer):
    filename = serializers.CharField(max_length=255)
    content_type = serializers.CharField(max_length=255, required=False, default="application/octet-stream")
    content_base64 = serializers.CharField(allow_blank=True)

    def validate_content_base64(self, value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not valid base64.") from None


class OutboxCreateSerializer(serializers.Serializer):
    connection = serializers.CharField(max_length=150, help_text="Name of the tenant's outbound connection.")
    to = serializers.ListField(child=serializers.CharField(max_length=998), required=False, default=list,
                               max_length=1000)
    cc = serializers.ListField(child=serializers.CharField(max_length=998), required=False, default=list,
                               max_length=1000)
    bcc = serializers.ListField(child=serializers.CharField(max_length=998), required=False, default=list,
                                max_length=1000)
    subject = serializers.CharField(required=False, default="", allow_blank=True, max_length=10000)
    text = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    html = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    attachments = OutboxAttachmentSerializer(many=True, required=False, default=list)


class OutboxCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.CharField()


class OutboxDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    connection = serializers.CharField()
    status = serializers.CharField()
    to = serializers.ListField(child=serializers.CharField())
    cc = serializers.ListField(child=serializers.CharField())
    bcc = serializers.ListField(child=serializers.CharField())
    subject = serializers.CharField(allow_blank=True)
    message_id = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    recipients = serializers.DictField(child=serializers.JSONField(),
                                       help_text='address → {"status": "accepted"|"refused", "code", "text"}')
    url = serializers.CharField()


class WebhookStateSerializer(serializers.Serializer):
    url = serializers.CharField()
    enabled = serializers.BooleanField()
    state = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)


class ConnectionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    direction = serializers.ChoiceField(choices=["inbound", "outbound"])
    protocol = serializers.CharField()
    host = serializers.CharField()
    enabled = serializers.BooleanField()
    state = serializers.ChoiceField(choices=["ok", "failing", "backoff", "disabled", "untested"])
    detail = serializers.CharField(allow_blank=True)
    last_activity_at = serializers.DateTimeField(allow_null=True)
    webhook = WebhookStateSerializer(allow_null=True)


class ConnectionListSerializer(serializers.Serializer):
    results = ConnectionSerializer(many=True)
