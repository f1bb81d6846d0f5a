"""/api/v1/ — contract URLs (docs/api.md)."""
from django.http import JsonResponse
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from . import views

app_name = "api"
urlpatterns = [
    path("messages/", views.MessageListView.as_view(), name="messages"),
    path("messages/<int:pk>/", views.MessageDetailView.as_view(), name="message"),
    path("messages/<int:pk>/raw", views.MessageRawView.as_view(), name="message-raw"),
    path("messages/<int:pk>/attachments/<int:n>", views.AttachmentView.as_view(), name="attachment"),
    path("outbox/", views.OutboxCreateView.as_view(), name="outbox"),
    path("outbox/<int:pk>/", views.OutboxDetailView.as_view(), name="outbox-message"),
    path("connections/", views.ConnectionListView.as_view(), name="connections"),
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    # Last: any other URL under /api/v1/ answers a JSON 404, not the site's HTML page.
    re_path(r"^", lambda request, *args, **kwargs: JsonResponse({"detail": "Not found."}, status=404)),
]
