"""API views: thin, every query through the services the pages use."""
from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ParseError
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from ..errors import TenantMailError
from ..models import ApiScope
from ..services.access.lookup import ConnectionNotFound, find_connection
from ..services.messages import details, files, headers, queries, search
from ..services.outbound import api as outbox_api
from ..services.setup import connection_states
from ..services.webhooks import payloads
from . import serializers as s
from .authentication import BearerTokenAuthentication
from .permissions import HasScope
from .throttling import TokenRateThrottle

MAX_PAGE_SIZE = 200
_ERRORS = {401: s.ErrorSerializer, 403: s.ErrorSerializer, 404: s.ErrorSerializer, 429: s.ErrorSerializer}


class ApiView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [TokenRateThrottle]
    required_scopes: tuple[str, ...] = ()

    def handle_exception(self, exc):
        if isinstance(exc, queries.MessageNotFound):
            exc = NotFound(exc.message)
        elif isinstance(exc, outbox_api.OutboxNotFound):
            exc = NotFound(exc.message)
        elif isinstance(exc, outbox_api.IdempotencyConflict):
            return Response({"detail": exc.message, "hint": exc.hint}, status=status.HTTP_409_CONFLICT)
        elif isinstance(exc, TenantMailError):
            return Response({"detail": exc.message, **({"hint": exc.hint} if exc.hint else {})},
                            status=status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)


def _message_item(m) -> dict:
    item = {
        "id": m.pk, "connection": m.connection.name, "subject": headers.decode_encoded_words(m.subject),
        "date": m.date.isoformat() if m.date else None, "fetched_at": m.fetched_at.isoformat(),
        "has_attachments": m.has_attachments, "purged": m.purged_at is not None,
        "url": payloads.api_url(f"messages/{m.pk}/"),
    }
    item["from"] = headers.decode_encoded_words(m.from_header)
    return item


LIST_PARAMETERS = [
    OpenApiParameter("q", str, description="Search: every word or \"phrase\" in subject, sender or body."),
    OpenApiParameter("connection", str, description="Inbound connection: name or id."),
    OpenApiParameter("from", OpenApiTypes.DATE, description="Messages on or after this day."),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Messages on or before this day."),
    OpenApiParameter("attachments", str, enum=["yes", "no"]),
    OpenApiParameter("older", str, description="Cursor: the page after (older than) it."),
    OpenApiParameter("newer", str, description="Cursor: the page before (newer than) it."),
    OpenApiParameter("page_size", int, description=f"1 to {MAX_PAGE_SIZE} (default {queries.PAGE_SIZE})."),
]


class MessageListView(ApiView):
    required_scopes = (ApiScope.MESSAGES_READ,)

    @extend_schema(operation_id="messages_list", parameters=LIST_PARAMETERS,
                   responses={200: s.MessagePageSerializer, 400: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request):
        params = {k: v for k, v in request.query_params.items()}
        token = request.auth
        raw_conn = (params.get("connection") or "").strip()
        if raw_conn and not raw_conn.isdigit():
            try:
                found = find_connection(tenant=token.tenant_id, name=raw_conn, kind="inbound").pk
            except ConnectionNotFound:
                found = 0
            params["connection"] = str(found)
        filters, errors = search.parse_filters(params=params)
        if raw_conn and (filters.connection_id is None or filters.connection_id == 0):
            filters = search.MessageFilters(query=filters.query, connection_id=-1, date_from=filters.date_from,
                                         date_to=filters.date_to, has_attachments=filters.has_attachments)
        if errors:
            raise DRFValidationError({"detail": errors})
        try:
            size = int(params.get("page_size") or queries.PAGE_SIZE)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise DRFValidationError({"page_size": [f"Give a whole number from 1 to {MAX_PAGE_SIZE}."]})
        items, newer, older = queries.message_page(
            user=request.user, filters=filters, older_than=params.get("older"), newer_than=params.get("newer"),
            page_size=size, fields=("purged_at",),
        )
        base = {k: v for k, v in request.query_params.items() if k not in ("older", "newer")}
        path = request.build_absolute_uri(request.path)
        return Response({
            "results": [_message_item(m) for m in items],
            "older": older, "newer": newer,
            "next": f"{path}?{urlencode({**base, 'older': older})}" if older else None,
            "previous": f"{path}?{urlencode({**base, 'newer': newer})}" if newer else None,
        })


class MessageDetailView(ApiView):
    required_scopes = (ApiScope.MESSAGES_READ,)

    @extend_schema(responses={200: s.MessageDetailSerializer, **_ERRORS})
    def get(self, request, pk: int):
        message = queries.get_message(user=request.user, message_id=pk)
        attachments = queries.attachments_of(message=message)
        data = payloads.message_data(message, attachments)
        data.pop("tenant", None)
        data.update(
            tenant=message.tenant.slug, reply_to=headers.decode_encoded_words(message.reply_to_header),
            text=message.text_body, html=message.html_body,
            problems=[p.text for p in details.parse_problems(message=message)],
        )
        return Response(data)


def _file(field, *, content_type: str, disposition: str | None = None) -> FileResponse:
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    if disposition:
        response["Content-Disposition"] = disposition
    return response


class MessageRawView(ApiView):
    required_scopes = (ApiScope.MESSAGES_READ,)

    @extend_schema(responses={(200, "message/rfc822"): OpenApiResponse(OpenApiTypes.BINARY, description="The raw mail."),
                              410: s.ErrorSerializer, **_ERRORS})
    def get(self, request, pk: int):
        message = queries.get_message(user=request.user, message_id=pk)
        if message.purged_at or not message.raw:
            return Response({"detail": "The raw mail was removed (retention or erasure)."}, status=410)
        return _file(message.raw, content_type="message/rfc822",
                     disposition=files.content_disposition(filename=f"message-{message.pk}.eml"))


class AttachmentView(ApiView):
    required_scopes = (ApiScope.MESSAGES_READ,)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(
        OpenApiTypes.BINARY, description="The attachment, with its stored content type."), **_ERRORS})
    def get(self, request, pk: int, n: int):
        message = queries.get_message(user=request.user, message_id=pk)
        attachments = queries.attachments_of(message=message)
        if not 0 <= n < len(attachments):
            raise NotFound("No such attachment.")
        att = attachments[n]
        return _file(att.file, content_type=files.stored_content_type(att),
                     disposition=files.content_disposition(filename=att.filename or f"attachment-{n}"))


def _request_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class OutboxCreateView(ApiView):
    required_scopes = (ApiScope.OUTBOX_WRITE,)

    @extend_schema(
        request=s.OutboxCreateSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                     description="A retried POST with the same key returns the first result.")],
        responses={201: s.OutboxCreatedSerializer, 400: OpenApiTypes.OBJECT, 409: s.ErrorSerializer, **_ERRORS},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise ParseError("Send a JSON object.")
        serializer = s.OutboxCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = (request.headers.get("Idempotency-Key") or "").strip()
        if len(key) > 255:
            raise DRFValidationError({"Idempotency-Key": ["At most 255 characters."]})
        result = outbox_api.submit(tenant_id=request.auth.tenant_id, data=serializer.validated_data,
                                   idempotency_key=key or None, request_hash=_request_hash(request.data))
        body = {"id": result.message.pk, "status": result.message.status,
                "url": payloads.api_url(f"outbox/{result.message.pk}/")}
        response = Response(body, status=status.HTTP_201_CREATED)
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class OutboxDetailView(ApiView):
    required_scopes = (ApiScope.OUTBOX_READ, ApiScope.OUTBOX_WRITE)

    @extend_schema(responses={200: s.OutboxDetailSerializer, **_ERRORS})
    def get(self, request, pk: int):
        message = outbox_api.get(tenant_id=request.auth.tenant_id, message_id=pk)
        return Response({
            "id": message.pk, "connection": message.connection.name, "status": message.status,
            "to": message.to, "cc": message.cc, "bcc": message.bcc, "subject": message.subject,
            "message_id": message.message_id, "attempts": message.attempts,
            "created_at": message.created_at.isoformat(),
            "sent_at": message.sent_at.isoformat() if message.sent_at else None,
            "next_attempt_at": message.next_attempt_at.isoformat() if message.next_attempt_at else None,
            "last_error": message.last_error, "recipients": message.recipient_results or {},
            "url": payloads.api_url(f"outbox/{message.pk}/"),
        })


class ConnectionListView(ApiView):
    required_scopes = (ApiScope.CONNECTIONS_READ,)

    @extend_schema(responses={200: s.ConnectionListSerializer, **_ERRORS})
    def get(self, request):
        return Response({"results": connection_states.connection_states(tenant_id=request.auth.tenant_id)})
