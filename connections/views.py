"""Web pages for polled messages. Placeholder until the messages pages land."""
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse


@login_required
def message_list(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Messages")
