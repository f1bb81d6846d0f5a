"""Web pages for polled messages: list, detail, safe HTML body, attachments, raw source.

Thin: every decision is made in `connections.services.messages` (queries, search, details, files, sanitize).
A message, attachment or raw file outside the user's tenants is a plain 404.
"""
from __future__ import annotations

from functools import wraps
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_safe

from .middleware import FILE_POLICY, PAGE_POLICY, content_security_policy, frame_policy
from .services.messages import details, files, headers, queries, search

LOGIN_URL = "messages:login"
_STYLESHEET = Path(__file__).parent / "static" / "connections" / "messages.css"


def _private(response: HttpResponse, *, cacheable: bool = False) -> HttpResponse:
    if cacheable:
        patch_cache_control(response, private=True, max_age=3600)
    else:
        patch_cache_control(response, private=True, no_store=True)
    return response


def _not_found(request: HttpRequest) -> HttpResponse:
    """The same plain 404 page for a missing, foreign or guessed id: nothing is revealed.

    Rendered here (not by Django's handler) so that it carries the pages' CSP and look.
    """
    response = render(request, "messages/not_found.html", status=404)
    response["Content-Security-Policy"] = PAGE_POLICY
    return _private(response)


def _not_found_on_miss(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except (queries.MessageNotFound, Http404):
            return _not_found(request)

    return wrapped


def reader(policy: str = "") -> Callable:
    """Login required, GET/HEAD only, 404 for anything not visible, and the right CSP."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        view = _not_found_on_miss(view)
        view = content_security_policy(policy)(view) if policy else content_security_policy()(view)
        return require_safe(login_required(view, login_url=LOGIN_URL))

    return decorator


@reader()
def message_list(request: HttpRequest) -> HttpResponse:
    filters, errors = search.parse_filters(params=request.GET)
    page = queries.list_messages(
        user=request.user,
        filters=filters,
        older_than=request.GET.get("older"),
        newer_than=request.GET.get("newer"),
    )
    base = {k: v for k, v in request.GET.items() if k not in {"older", "newer"} and v}
    connections = queries.visible_connections(user=request.user, selected=filters.connection_id)
    context = {
        "page": page,
        "filters": filters,
        "errors": errors,
        "connections": connections,
        "many_tenants": len({c["tenant__name"] for c in connections}) > 1,
        "connection_groups": queries.group_by_tenant(connections),
        "newer_url": f"?{urlencode({**base, 'newer': page.newer})}" if page.newer else "",
        "older_url": f"?{urlencode({**base, 'older': page.older})}" if page.older else "",
        "first_url": f"?{urlencode(base)}" if base else "?",
    }
    return _private(render(request, "messages/list.html", context))


@reader()
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = queries.get_message(user=request.user, message_id=pk)
    load_remote = request.GET.get("remote") == "1"
    attachments = queries.attachments_of(message=message)
    body = None
    if message.html_body:
        body = details.sanitized_body(message=message, load_remote=load_remote, url_for=lambda a: "")
    frame_url = reverse("messages:body", args=[pk]) + ("?remote=1" if load_remote else "")
    context = {
        "message": message,
        "sender": headers.sender(message.from_header),
        "subject": headers.decode_encoded_words(message.subject),
        "to": headers.decode_encoded_words(message.to_header),
        "cc": headers.decode_encoded_words(message.cc_header),
        "reply_to": headers.decode_encoded_words(message.reply_to_header),
        "headers": headers.raw_headers(message=message),
        "attachments": attachments,
        "problems": details.parse_problems(message=message),
        "frame_url": frame_url,
        "blocked_remote": body.blocked_remote if body else 0,
        "load_remote": load_remote,
    }
    return _private(render(request, "messages/detail.html", context))


@reader()
@xframe_options_sameorigin
def message_body(request: HttpRequest, pk: int) -> HttpResponse:
    """The sanitised HTML body as its own document, for the sandboxed iframe."""
    message = queries.get_message(user=request.user, message_id=pk)
    load_remote = request.GET.get("remote") == "1"
    body = details.sanitized_body(
        message=message,
        load_remote=load_remote,
        url_for=lambda att: reverse("messages:inline", args=[pk, att.pk]),
    )
    response = render(request, "messages/body.html", {"html": body.html})
    response["Content-Security-Policy"] = frame_policy(load_remote=load_remote)
    response["Referrer-Policy"] = "no-referrer"
    return _private(response)


def _raw_file(message):
    try:
        return message.raw.open("rb")
    except (OSError, ValueError):
        raise Http404("The raw message is not in storage.") from None


@reader(FILE_POLICY)
def message_source(request: HttpRequest, pk: int) -> HttpResponse:
    """The raw message as plain text ("view source")."""
    message = queries.get_message(user=request.user, message_id=pk)
    charset = details.raw_charset(message=message)
    response = FileResponse(_raw_file(message), content_type=f"text/plain; charset={charset}")
    response["Content-Disposition"] = files.content_disposition(filename=f"message-{pk}.txt", disposition="inline")
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response)


@reader(FILE_POLICY)
def message_raw(request: HttpRequest, pk: int) -> HttpResponse:
    """Download of the raw .eml, byte for byte as received."""
    message = queries.get_message(user=request.user, message_id=pk)
    response = FileResponse(_raw_file(message), content_type="message/rfc822")
    response["Content-Disposition"] = files.content_disposition(filename=f"message-{pk}.eml")
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response)


def _attachment_file(attachment):
    try:
        return attachment.file.open("rb")
    except (OSError, ValueError):
        raise Http404("The attachment is not in storage.") from None


@reader(FILE_POLICY)
def attachment_download(request: HttpRequest, pk: int, attachment_id: int) -> HttpResponse:
    attachment = queries.get_attachment(user=request.user, message_id=pk, attachment_id=attachment_id)
    response = FileResponse(_attachment_file(attachment), content_type=files.stored_content_type(attachment))
    response["Content-Disposition"] = files.content_disposition(filename=attachment.filename)
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response)


@reader(FILE_POLICY)
def attachment_inline(request: HttpRequest, pk: int, attachment_id: int) -> HttpResponse:
    """An inline image for the HTML body (cid:); only raster image types, never SVG or HTML."""
    attachment = queries.get_attachment(user=request.user, message_id=pk, attachment_id=attachment_id)
    if not files.is_inline_image(attachment):
        raise Http404("Not an image that can be shown inline.")
    response = FileResponse(_attachment_file(attachment), content_type=files.inline_content_type(attachment))
    response["Content-Disposition"] = files.content_disposition(filename=attachment.filename, disposition="inline")
    response["X-Content-Type-Options"] = "nosniff"
    return _private(response, cacheable=True)


def unknown(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other URL under /messages/: the same Not found page, with CSP (not Django's bare one).

    A path that only lacks its trailing slash is redirected, as APPEND_SLASH would do.
    """
    if not request.path.endswith("/"):
        try:
            match = resolve(request.path + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "unknown":
            query = request.META.get("QUERY_STRING", "")
            return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""))
    return _not_found(request)


@require_safe
def stylesheet(request: HttpRequest) -> HttpResponse:
    """The pages' one small stylesheet, served here so it works without static file setup."""
    response = HttpResponse(_STYLESHEET.read_bytes(), content_type="text/css; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = FILE_POLICY
    patch_cache_control(response, public=True, max_age=3600)
    return response


class LoginView(auth_views.LoginView):
    """A sign-in page for readers who are not staff (the admin's login refuses them)."""

    template_name = "messages/login.html"
    redirect_authenticated_user = True

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        return response

    def get_default_redirect_url(self) -> str:
        return reverse("messages:list")


class LogoutView(auth_views.LogoutView):
    next_page = "messages:login"

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        return response
