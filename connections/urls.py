"""Web pages for polled messages (outside the admin)."""
from django.urls import path, re_path

from . import views

app_name = "messages"
urlpatterns = [
    path("", views.message_list, name="list"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("style.css", views.stylesheet, name="stylesheet"),
    path("<int:pk>/", views.message_detail, name="detail"),
    path("<int:pk>/body/", views.message_body, name="body"),
    path("<int:pk>/source/", views.message_source, name="source"),
    path("<int:pk>/raw.eml", views.message_raw, name="raw"),
    path("<int:pk>/attachments/<int:attachment_id>/", views.attachment_download, name="attachment"),
    path("<int:pk>/inline/<int:attachment_id>/", views.attachment_inline, name="inline"),
    # Last: every other URL under /messages/ gets the pages' own 404 (with CSP).
    re_path(r"^(?P<rest>.*)$", views.unknown, name="unknown"),
]
