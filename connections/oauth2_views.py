"""The OAuth2 callback (`/oauth2/callback/`): where the provider sends the browser back after
consent. No login needed: the single-use, random `state` binds it to the authorization started
from the admin or the authorize_credential command; the PKCE verifier never left the server."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables

from .errors import TenantMailError
from .services.oauth2 import authorize

_PAGE = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{}</title></head>"
         "<body style='font-family:sans-serif;margin:2em'><h1>{}</h1><p id='oauth2-result'>{}</p>{}</body></html>")


@never_cache
@sensitive_variables("code")
def callback(request: HttpRequest) -> HttpResponse:
    code = request.GET.get("code", "")
    try:
        cred = authorize.complete(state=request.GET.get("state", ""), code=code, error=request.GET.get("error", ""),
                                  error_description=request.GET.get("error_description", ""))
    except TenantMailError as exc:
        body = format_html(_PAGE, "Authorization failed", "Authorization failed", exc.message,
                           format_html("<p>{}</p>", exc.hint) if exc.hint else "")
        return HttpResponse(body, status=400)
    try:
        link = format_html("<p><a id='back' href='{}'>Back to the artifact</a></p>",
                           reverse("admin:connections_oauth2authorizationcode_change", args=[cred.pk]))
    except NoReverseMatch:
        link = ""
    return HttpResponse(format_html(_PAGE, "Authorized", "Authorized",
                                    f"OAuth2 artifact '{cred.name}' is authorized: its connections can log in now. "
                                    "You can close this window.", link))
