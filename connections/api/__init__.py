"""The JSON API under /api/v1/ (Django REST framework, schema by drf-spectacular).

Thin: authentication by per-tenant bearer tokens (services.access.api_tokens), scope checks,
per-token throttling; every query goes through the same services as the pages.
"""
