"""Authorize an OAuth2 Authorization Code artifact without the admin: print the provider's URL
and wait until its callback (<base URL>/oauth2/callback/ of this app) has completed."""
from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from connections.conf import conf
from connections.errors import TenantMailError
from connections.services.oauth2 import authorize


class Command(BaseCommand):
    help = (
        "Start the authorization-code flow (PKCE) of an OAuth2 Authorization Code artifact: prints the "
        "URL to open in a browser, then waits until the provider's callback reached this app. "
        "Exit status 0 when authorized, 1 on refusal, error or timeout."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("credential_name")
        parser.add_argument("--base-url", default="",
                            help="This app's public base URL (default: TENANTMAIL_BASE_URL, else http://127.0.0.1:8000).")
        parser.add_argument("--timeout", type=float, default=600.0, help="Seconds to wait for the callback (600).")
        parser.add_argument("--device", action="store_true",
                            help="Use the device authorization grant (RFC 8628) where the provider offers it: "
                                 "prints a code to enter at the provider; no callback to this app needed.")

    def handle(self, *args, tenant_slug: str, credential_name: str, base_url: str = "", timeout: float = 600.0,
               device: bool = False, **options) -> None:
        try:
            cred = authorize.find(tenant_slug=tenant_slug, name=credential_name)
        except TenantMailError as exc:
            raise CommandError(str(exc)) from None
        if device:
            return self._device(cred, credential_name, timeout)
        base = base_url or conf.base_url()
        redirect_uri = authorize.callback_url(base)
        try:
            url = authorize.start(credential_id=cred.pk, redirect_uri=redirect_uri)
        except TenantMailError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Callback URL (register it at the provider): {redirect_uri}")
        self.stdout.write("Open this URL in a browser, sign in as the mailbox user and approve:")
        self.stdout.write(url)
        self.stdout.flush()
        state = authorize.state_of(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, error = authorize.status(state=state)
            if done:
                if error:
                    raise CommandError(f"Not authorized: {error}")
                self.stdout.write(self.style.SUCCESS(f"Authorized: '{credential_name}' can log in now."))
                return
            time.sleep(0.5)
        raise CommandError(f"No callback within {timeout:g}s: not authorized. Is {redirect_uri} reachable from the browser?")

    def _device(self, cred, credential_name: str, timeout: float) -> None:
        try:
            flow = authorize.device_start(credential_id=cred.pk)
            self.stdout.write(f"Open {flow.verification_uri} and enter the code {flow.user_code}"
                              + (f" (or open {flow.verification_uri_complete})" if flow.verification_uri_complete else ""))
            self.stdout.write(f"Waiting up to {min(timeout, flow.expires_in):g}s for the approval ...")
            self.stdout.flush()
            authorize.device_wait(credential_id=cred.pk, flow=flow, timeout=timeout)
        except TenantMailError as exc:
            raise CommandError(f"Not authorized: {exc}") from None
        self.stdout.write(self.style.SUCCESS(f"Authorized: '{credential_name}' can log in now."))
