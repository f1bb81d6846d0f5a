"""Web pages for polled messages (outside the admin)."""
from django.urls import path

from . import views

app_name = "messages"
urlpatterns = [
    path("", views.message_list, name="list"),
]
