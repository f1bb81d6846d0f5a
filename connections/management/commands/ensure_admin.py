"""Create the first superuser when none exists (used by ./scripts/run).

Name, e-mail and password come from TENANTMAIL_ADMIN_USER, TENANTMAIL_ADMIN_EMAIL and
TENANTMAIL_ADMIN_PASSWORD (environment or .env). Without a password one is generated and
printed once: it is stored only as a hash, so it cannot be shown again.
"""
from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an admin superuser if no superuser exists yet; otherwise do nothing."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True, is_active=True).exists():
            self.stdout.write("An admin user already exists; nothing to do.")
            return
        username = os.environ.get("TENANTMAIL_ADMIN_USER", "").strip() or "admin"
        email = os.environ.get("TENANTMAIL_ADMIN_EMAIL", "").strip() or "admin@localhost"
        password = os.environ.get("TENANTMAIL_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        existing = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if existing is not None:
            # A plain user of that name exists: refuse rather than silently promote it.
            raise CommandError(
                f"No superuser exists, but a user named '{username}' does; set TENANTMAIL_ADMIN_USER "
                "to another name or run `python manage.py createsuperuser`."
            )
        User.objects.create_superuser(username=username, email=email, password=password)
        if generated:
            bar = "=" * 72
            self.stdout.write(
                f"{bar}\nCreated the admin user.\n  user name: {username}\n  password:  {password}\n"
                "Write the password down now: it is shown only this once.\n"
                "(Set TENANTMAIL_ADMIN_PASSWORD to choose it yourself.)\n" + bar
            )
        else:
            self.stdout.write(
                f"Created the admin user '{username}' with the password from TENANTMAIL_ADMIN_PASSWORD."
            )
