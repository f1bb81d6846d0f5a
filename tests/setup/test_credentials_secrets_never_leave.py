"""The password of a User Credentials artifact never leaves: not in any admin page (of the
credential or of a connection using it), not in logs, exception text, error reports, task
messages, the admin history or any database column other than the encrypted ones —
including a failed login against the real mail servers."""
from __future__ import annotations

import json
import logging
import traceback
import uuid

import pytest
from celery.signals import before_task_publish
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse
from django.views.debug import (
    ExceptionReporter,
    SafeExceptionReporterFilter,
    get_default_exception_reporter_filter,
)

from connections.mail.errors import MailError
from connections.mail.imap import IMAPClient
from connections.mail.pop3 import POP3Client
from connections.mail.smtp import SMTPClient
from connections.models import InboundConnection, OutboundConnection, UserCredential
from connections.services.setup import credentials as service

from .leaks import leaks

REPORT_FILTER = "connections.services.setup.credentials.SecretSafeExceptionReporterFilter"


@pytest.fixture
def secret() -> str:
    # Unique per run, so it cannot occur anywhere by chance; HTML, URL and JSON metacharacters
    # and non-ASCII so that every escaped form differs from the plain one.
    return f"Zq{uuid.uuid4().hex[:12]}-Ünï密🔑 <&\"'>+/=%"


@pytest.fixture
def published_tasks():
    """Every Celery message published during the test (body and headers), via Celery's signal."""
    seen: list[str] = []

    def record(sender=None, body=None, headers=None, **kwargs):
        seen.append(f"{sender} {body!r} {headers!r}")

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)


def _failed_login(client_class, settings, *, tenant_id: int, name: str) -> MailError:
    """Log in as the runtime does (deployed values) and return the error; no secret in locals
    here except inside the DeployedCredential, whose repr hides it."""
    deployed = service.resolve_deployed(tenant_id=tenant_id, name=name)
    try:
        with client_class(settings, deployed.password):
            pass
    except MailError as exc:
        return exc
    raise AssertionError(f"{client_class.__name__} logged in with a wrong password")


def _exception_texts(exc: BaseException) -> dict[str, str]:
    return {
        "str": str(exc), "repr": repr(exc), "hint": getattr(exc, "hint", ""),
        "traceback": "".join(traceback.format_exception(exc)),
        "args": repr(exc.args),
    }


def _error_report(exc: BaseException, secret: str) -> tuple[str, str]:
    """Django's error report for `exc` raised while handling an admin POST carrying the secret."""
    request = RequestFactory().post(
        "/admin/connections/usercredential/add/",
        {"name": "x", "new_password": secret, "new_password_confirmation": secret},
    )
    request.sensitive_post_parameters = ["new_password", "new_password_confirmation"]
    # Django caches the filter for the process; the tests change DEFAULT_EXCEPTION_REPORTER_FILTER.
    get_default_exception_reporter_filter.cache_clear()
    reporter = ExceptionReporter(request, type(exc), exc, exc.__traceback__)
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def _table_texts(exclude_columns: set[tuple[str, str]]) -> dict[str, str]:
    """Every non-binary column of every table of the project, the admin log and the sessions, as text."""
    texts: dict[str, str] = {}
    models = list(apps.get_app_config("connections").get_models()) + [LogEntry, Session]
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(f"SELECT * FROM {table}")
            names = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(names, row):
                    if (table, column) in exclude_columns or isinstance(value, (bytes, memoryview)):
                        continue
                    texts[f"db {table}.{column}"] = texts.get(f"db {table}.{column}", "") + f" {value}"
    return texts


@pytest.mark.mailservers
def test_password_appears_nowhere(world, mail_servers, secret, caplog, capfd, published_tasks, settings):
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = REPORT_FILTER
    caplog.set_level(logging.DEBUG)  # root: every logger that propagates
    address, _real_password = mail_servers.add_user()
    outputs: dict[str, str] = {}
    rendered: list[str] = []

    def get(client, url: str, label: str, **kwargs) -> None:
        response = client.get(url, **kwargs)
        assert response.status_code == 200, (label, url, response.status_code)
        outputs[f"page {label} {url}"] = response.content.decode()
        rendered.append(label)

    # --- the credential's life through the admin: create (POST carrying the secret), deploy.
    admin_client = world.client(world.admin_a)
    add_url = reverse("admin:connections_usercredential_add")
    bad = admin_client.post(add_url, {
        "tenant": world.tenant_a.pk, "name": "leak-box", "username": address,
        "new_password": secret, "new_password_confirmation": secret + "typo",
    })
    outputs["page add (mismatch re-render)"] = bad.content.decode()
    created = admin_client.post(add_url, {
        "tenant": world.tenant_a.pk, "name": "leak-box", "username": address, "description": "",
        "new_password": secret, "new_password_confirmation": secret, "_save": "Save",
    }, follow=True)
    assert created.status_code == 200
    outputs["page add (redirect target)"] = created.content.decode()
    cred = UserCredential.objects.get(tenant=world.tenant_a, name="leak-box")
    assert cred.password == secret
    operator_client = world.client(world.operator_a)
    deployed = operator_client.post(
        reverse("admin:connections_usercredential_deploy", args=[cred.pk]), follow=True
    )
    outputs["page deploy (redirect target)"] = deployed.content.decode()
    assert UserCredential.objects.get(pk=cred.pk).version == 1

    # --- connections that use it (created directly: their admins are someone else's).
    common = dict(
        tenant=world.tenant_a, host=mail_servers.host, protection="ssl_tls", authentication="plain",
        credential_name="leak-box", trusted_ca=mail_servers.ca_pem, timeout=10,
    )
    inbound = InboundConnection.objects.create(name="leak-in", port=mail_servers.ports["imaps"], **common)
    inbound_pop3 = InboundConnection.objects.create(
        name="leak-pop", protocol="pop3", port=mail_servers.ports["pop3s"], **common
    )
    outbound = OutboundConnection.objects.create(
        name="leak-out", port=mail_servers.ports["smtps"], default_from=address, **common
    )

    # --- failing logins against the real servers, with the deployed (wrong) password, as the
    # runtime does them: every protocol, plain (over TLS) and encrypted (CRAM-MD5 / APOP).
    errors: list[MailError] = []
    for client_class, protocol in ((SMTPClient, "smtp"), (IMAPClient, "imap"), (POP3Client, "pop3")):
        for protection, authentication in (("ssl_tls", "plain"), ("starttls_mandatory", "encrypted")):
            ms = mail_servers.mail_settings(
                protocol=protocol, protection=protection, authentication=authentication, username=address,
                credential_name="leak-box",
            )
            errors.append(_failed_login(client_class, ms, tenant_id=world.tenant_a.pk, name="leak-box"))
    for i, exc in enumerate(errors):
        assert exc.step == "auth", str(exc)
        for part, text in _exception_texts(exc).items():
            outputs[f"login error {i} {part}"] = text
        report_text, report_html = _error_report(exc, secret)
        outputs[f"error report {i} text"] = report_text
        outputs[f"error report {i} html"] = report_html

    # --- the connectivity test (service), which stores its report on the connection.
    from connections.services.setup.connectivity import run_connectivity_test

    for kind, obj in (("inbound", inbound), ("inbound", inbound_pop3), ("outbound", outbound)):
        result = run_connectivity_test(kind=kind, connection_id=obj.pk)
        assert not result.ok and result.failed_step and result.failed_step["name"] == "auth", result.summary
        outputs[f"connectivity {obj.name}"] = f"{result.summary} {result!r} {json.dumps(result.report, default=str)}"

    # --- every admin page of the credential, as superuser, tenant admin, operator and viewer.
    for who, client in (("superuser", world.client(world.superuser)), ("admin", admin_client),
                        ("operator", operator_client), ("viewer", world.client(world.viewer_a))):
        get(client, reverse("admin:connections_usercredential_changelist"), f"{who} credential changelist")
        get(client, reverse("admin:connections_usercredential_changelist"), f"{who} credential search",
            data={"q": "leak"})
        get(client, reverse("admin:connections_usercredential_change", args=[cred.pk]), f"{who} credential change")
        get(client, reverse("admin:connections_usercredential_history", args=[cred.pk]), f"{who} credential history")
        if who in ("superuser", "admin"):
            get(client, add_url, f"{who} credential add")
            get(client, reverse("admin:connections_usercredential_delete", args=[cred.pk]),
                f"{who} credential delete confirmation")
            bulk = client.post(reverse("admin:connections_usercredential_changelist"),
                               {"action": "delete_selected", "_selected_action": [cred.pk]})
            outputs[f"page {who} credential bulk delete confirmation"] = bulk.content.decode()
        # ...and of the connections using it, whatever admin classes are registered for them
        # (with the failed test's result panel), plus their "Test connection" button if any.
        for model, obj in ((InboundConnection, inbound), (InboundConnection, inbound_pop3),
                           (OutboundConnection, outbound)):
            if model not in admin.site._registry:
                continue
            opts = model._meta
            try:
                change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
                changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            except NoReverseMatch:
                continue
            get(client, changelist, f"{who} {opts.model_name} changelist")
            get(client, change, f"{who} {opts.model_name} change")
            try:
                test_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_test", args=[obj.pk])
            except NoReverseMatch:
                continue
            if who == "operator":
                response = client.post(test_url, follow=True)
                assert response.status_code == 200
                outputs[f"page {who} {opts.model_name} test connection"] = response.content.decode()
                rendered.append(f"{who} {opts.model_name} test connection")
    assert sum("credential" in label for label in rendered) >= 4 * 4 + 2 * 2
    for model in (InboundConnection, OutboundConnection):
        if model in admin.site._registry:  # its admin is there: its pages were checked
            assert any(f"{model._meta.model_name} change" in label for label in rendered), model

    # --- logs, console, task messages, every database column that is not encrypted.
    outputs["logs"] = caplog.text + "\n".join(
        r.getMessage() + (r.exc_text or "") + repr(r.__dict__.get("args")) for r in caplog.records
    )
    out, err = capfd.readouterr()
    outputs["stdout"], outputs["stderr"] = out, err
    outputs["celery messages"] = "\n".join(published_tasks)
    outputs["cookies"] = admin_client.cookies.output() + operator_client.cookies.output()
    outputs.update(_table_texts(exclude_columns=set()))

    found = {source: leaks(text, secret) for source, text in outputs.items()}
    assert {source: forms for source, forms in found.items() if forms} == {}
    assert any(r.name.startswith("connections") for r in caplog.records)  # logging was captured


def _login_error(username: str, password: str) -> MailError:
    """A protocol-layer style failure; caught here so that the traceback starts in this frame
    (the test's own frame, with pytest's assertion temporaries, stays out of the report)."""

    def login(username: str, password: str) -> None:
        raise MailError(f"authentication failed for user {username}")

    try:
        login(username, password)
    except MailError as exc:
        return exc
    raise AssertionError("not reached")


def test_error_report_filter_hides_frame_locals(world, settings, secret):
    """Django's default filter shows a frame's locals in an error report; ours hides secret-named ones."""
    error = _login_error("owner@example.test", secret)

    # No report is kept in a local here: the report reads this frame's locals too.
    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = "django.views.debug.SafeExceptionReporterFilter"
    assert leaks(_error_report(error, secret)[1], secret), "Django's default filter shows the password"

    settings.DEFAULT_EXCEPTION_REPORTER_FILTER = REPORT_FILTER
    for debug in (False, True):
        settings.DEBUG = debug
        assert leaks(_error_report(error, secret)[0], secret) == []
        assert leaks(_error_report(error, secret)[1], secret) == []
        assert "owner@example.test" in _error_report(error, secret)[0]  # the report is still useful
    assert issubclass(service.SecretSafeExceptionReporterFilter, SafeExceptionReporterFilter)


def test_no_celery_task_takes_a_secret():
    """Tasks take ids and resolve credentials themselves: no task parameter may carry a secret."""
    import inspect
    import re

    import connections.tasks  # noqa: F401  (registers the project's tasks)
    from celery import current_app

    secretish = re.compile(r"pass|secret|token|credential(?!_id|_name)|key", re.I)
    tasks = {name: task for name, task in current_app.tasks.items() if name.startswith("connections.")}
    assert tasks, "no connections.* Celery task registered"
    offenders = {
        name: [p for p in inspect.signature(task.run).parameters if secretish.search(p)]
        for name, task in tasks.items()
    }
    assert {name: params for name, params in offenders.items() if params} == {}
