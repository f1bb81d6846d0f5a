"""Sign-in throttling: django-axes' backend, for sign-ins that come with a request.

Both sign-in pages (and any web authentication) pass the request and are throttled by
django-axes (docs/security.md). A call without a request is not a web sign-in — a
management command, a test client's login() — and there is no client to throttle:
axes' own backend would raise for it; this one leaves it to the next backend.
"""
from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class SignInThrottlingBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
