"""The schema of issue 9 as written in the issue, and the gaps an acceptance review found."""
from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from connections.errors import CredentialError
from connections.models import (
    CredentialDeployment,
    InboundConnection,
    OutboundConnection,
    ScheduleKind,
    Tenant,
    UserCredential,
)
from connections.services.setup import config
from connections.services.setup import credentials as credential_service

pytestmark = pytest.mark.django_db

# The example of the issue, verbatim (comments included): the contract operators script against.
ISSUE_EXAMPLE = """\
tenants:
  - slug: acme                      # unique
    name: ACME Corp
    credentials:                    # User Credentials artifacts
      - name: acme-mailbox
        description: Orders mailbox owner
        user: orders@acme.example
        password_env: ACME_MAILBOX_PASSWORD
        deploy: true
    outbound:                       # SMTP (mail receiver adapter)
      - name: smtp-main
        host: smtp.acme.example
        port: 587                   # optional: default by protection
        protection: starttls_mandatory   # off | starttls_mandatory | starttls_optional | ssl_tls
        authentication: encrypted        # none | plain | encrypted
        credential: acme-mailbox         # Credential Name
        timeout: 30                      # seconds
        verify_certificate: true
        trusted_ca: null                 # PEM text, optional
        allow_plain_without_tls: false
        from: orders@acme.example
        reply_to: null
        max_per_session: 100
        enabled: true
    inbound:                        # IMAP/POP3 (mail sender adapter)
      - name: orders
        protocol: imap                   # imap | pop3
        host: imap.acme.example
        port: 993
        protection: ssl_tls
        authentication: plain
        credential: acme-mailbox
        timeout: 30
        verify_certificate: true
        trusted_ca: null
        allow_plain_without_tls: false
        folder: INBOX                    # imap only
        selection: unread                # unread | all (imap only)
        max_messages: 100
        post_processing: mark_read       # imap: mark_read | delete | move | move_and_mark_read | keep; pop3: delete | keep
        archive_folder: null             # for move and move_and_mark_read
        schedule: {every: 300}           # seconds; or {cron: "*/5 * * * *"}
        timezone: UTC
        lock_timeout: 1800               # seconds
        enabled: true
"""
ENV = {"ACME_MAILBOX_PASSWORD": "Örders pw 1"}


def apply_text(text: str, env=ENV, **kw) -> config.Plan:
    return config.apply(config.load(text), environ=env, **kw)


def refused(text: str, env=ENV, **kw) -> list[str]:
    with pytest.raises(config.ConfigValidationError) as info:
        apply_text(text, env=env, **kw)
    return info.value.errors


def _subset(given, exported, path="") -> None:
    """Every key and value of the issue's example is in the export, unchanged."""
    if isinstance(given, dict):
        assert isinstance(exported, dict), path
        for key, value in given.items():
            assert key in exported, f"{path}.{key} missing from the export"
            _subset(value, exported[key], f"{path}.{key}")
    elif isinstance(given, list):
        assert isinstance(exported, list) and len(exported) == len(given), path
        for i, (a, b) in enumerate(zip(given, exported)):
            _subset(a, b, f"{path}[{i}]")
    else:
        assert given == exported, f"{path}: {given!r} != {exported!r}"


def test_the_issues_example_applies_cleanly_then_changes_nothing_and_exports_back():
    plan = apply_text(ISSUE_EXAMPLE)
    assert plan.applied
    assert [(c.action, c.kind, c.label) for c in plan.changes] == [
        ("create", "tenant", "acme"),
        ("create", "credential", "acme/acme-mailbox"),
        ("deploy", "credential", "acme/acme-mailbox"),
        ("create", "outbound", "acme/smtp-main"),
        ("create", "inbound", "acme/orders"),
    ]
    assert credential_service.resolve_deployed(
        tenant_id=Tenant.objects.get(slug="acme").pk, name="acme-mailbox"
    ).password == "Örders pw 1"
    inbound = InboundConnection.objects.get()
    assert (inbound.schedule_kind, inbound.schedule_every, inbound.archive_folder) == (ScheduleKind.INTERVAL, 300, "")
    out = OutboundConnection.objects.get()
    assert (out.default_from, out.default_reply_to, out.max_per_session) == ("orders@acme.example", "", 100)

    second = apply_text(ISSUE_EXAMPLE)
    assert second.empty and str(second) == "No changes."

    exported = config.export()
    # Every key of the issue, with its value -- including the operator's own variable name.
    _subset(config.load(ISSUE_EXAMPLE), exported)
    text = config.dump(exported)
    assert "password_env: ACME_MAILBOX_PASSWORD\n" in text and "schedule: {every: 300}" in text
    assert "Örders" not in text

    # export -> apply on an empty database -> export: the same document.
    for model in (InboundConnection, OutboundConnection, UserCredential, Tenant):
        model.objects.all().delete()
    assert config.apply(config.load(text), environ=ENV).applied
    assert config.dump(config.export()) == text


def test_the_cron_form_of_the_issue_applies():
    plan = apply_text(ISSUE_EXAMPLE.replace("schedule: {every: 300}", 'schedule: {cron: "*/5 * * * *"}'))
    assert plan.applied
    inbound = InboundConnection.objects.get()
    assert inbound.schedule_kind == ScheduleKind.CRON and inbound.schedule_cron == "*/5 * * * *"
    assert "schedule: {cron: '*/5 * * * *'}" in config.dump(config.export())


@pytest.mark.parametrize("value", ["mark_read", "delete", "move", "move_and_mark_read", "keep"])
def test_every_imap_post_processing_value_of_the_issue(value):
    archive = "Archive" if value.startswith("move") else "null"
    text = ISSUE_EXAMPLE.replace("post_processing: mark_read", f"post_processing: {value}").replace(
        "archive_folder: null", f"archive_folder: {archive}"
    )
    apply_text(text)
    inbound = InboundConnection.objects.get()
    assert inbound.post_processing == value
    assert apply_text(text).empty
    item = config.export()["tenants"][0]["inbound"][0]
    assert item["post_processing"] == value and item["archive_folder"] == (None if archive == "null" else archive)


@pytest.mark.parametrize("value", ["delete", "keep"])
def test_every_pop3_post_processing_value_of_the_issue(value):
    text = (
        ISSUE_EXAMPLE.replace("protocol: imap", "protocol: pop3").replace("port: 993", "port: 995")
        .replace("        folder: INBOX                    # imap only\n", "")
        .replace("        selection: unread                # unread | all (imap only)\n", "")
        .replace("post_processing: mark_read", f"post_processing: {value}")
    )
    apply_text(text)
    assert InboundConnection.objects.get().post_processing == value
    assert apply_text(text).empty


# --------------------------------------------------------------------------- gaps found in review

def test_a_missing_environment_variable_does_not_hide_the_credentials_other_errors():
    errors = refused(ISSUE_EXAMPLE.replace("- name: acme-mailbox\n", "- name: acme mailbox\n"), env={})
    assert any(e.startswith("tenants[0].credentials[0].name: Use letters, digits") for e in errors), errors
    assert any(e.startswith("tenants[0].credentials[0].password_env: the environment variable") for e in errors)


def test_a_password_longer_than_255_characters_is_refused_without_showing_it():
    long_pw = "p" * 256
    errors = refused(ISSUE_EXAMPLE, env={"ACME_MAILBOX_PASSWORD": long_pw})
    assert errors == [
        "tenants[0].credentials[0].password_env: the password in ACME_MAILBOX_PASSWORD is 256 characters long; "
        "at most 255 are allowed"
    ]
    assert not Tenant.objects.exists()
    apply_text(ISSUE_EXAMPLE, env={"ACME_MAILBOX_PASSWORD": "ü" * 255})  # the limit itself is fine
    assert UserCredential.objects.get().password == "ü" * 255
    # The service refuses it too, whoever calls it.
    with pytest.raises(CredentialError, match="256 characters long; at most 255") as info:
        credential_service.save_artifact(credential=UserCredential.objects.get(), password=long_pw)
    assert long_pw not in str(info.value)


def test_a_new_password_env_name_is_an_update_without_a_new_deploy():
    apply_text(ISSUE_EXAMPLE)
    renamed = ISSUE_EXAMPLE.replace("password_env: ACME_MAILBOX_PASSWORD", "password_env: ORDERS_PW")
    plan = apply_text(renamed, env={"ORDERS_PW": ENV["ACME_MAILBOX_PASSWORD"]})
    assert [str(c) for c in plan.changes] == [
        "update credential acme/acme-mailbox: password_env: 'ACME_MAILBOX_PASSWORD' -> 'ORDERS_PW'"
    ]
    cred = UserCredential.objects.get()
    assert cred.password_env == "ORDERS_PW" and cred.version == 1
    assert config.export()["tenants"][0]["credentials"][0]["password_env"] == "ORDERS_PW"
    assert apply_text(renamed, env={"ORDERS_PW": ENV["ACME_MAILBOX_PASSWORD"]}).empty


def test_a_new_description_is_not_deployed_again():
    apply_text(ISSUE_EXAMPLE)
    plan = apply_text(ISSUE_EXAMPLE.replace("description: Orders mailbox owner", "description: Orders desk"))
    assert [c.action for c in plan.changes] == ["update"]
    assert UserCredential.objects.get().version == 1


def test_an_artifact_created_in_the_admin_exports_a_derived_variable_and_reapplies_unchanged():
    tenant = Tenant.objects.create(slug="acme", name="ACME Corp")
    cred = credential_service.save_artifact(
        credential=UserCredential(tenant=tenant, name="acme-mailbox", username="o@acme.example"), password="pw"
    )
    credential_service.deploy(credential_id=cred.pk, user=None)
    document = config.export()
    assert document["tenants"][0]["credentials"][0]["password_env"] == "ACME_ACME_MAILBOX_PASSWORD"
    assert config.apply(document, environ={"ACME_ACME_MAILBOX_PASSWORD": "pw"}).empty


def test_every_deploy_by_apply_config_is_in_the_admin_history(settings):
    apply_text(ISSUE_EXAMPLE)  # by the system: no user
    apply_text(ISSUE_EXAMPLE, env={"ACME_MAILBOX_PASSWORD": "second pw"})
    cred = UserCredential.objects.get()
    rows = list(CredentialDeployment.objects.filter(credential=cred).order_by("version"))
    assert [(d.version, d.deployed_by, d.source) for d in rows] == [(1, None, "apply_config"), (2, None, "apply_config")]
    assert rows[-1].deployed_at == cred.deployed_at

    root = get_user_model().objects.create_superuser("root", "r@example.com", "x-login-pw-1")
    client = Client()
    client.force_login(root)
    history = client.get(reverse("admin:connections_usercredential_history", args=[cred.pk])).content.decode()
    assert 'id="deploy-history"' in history
    assert history.count("system (apply_config)") == 2
    page = client.get(reverse("admin:connections_usercredential_change", args=[cred.pk])).content.decode()
    assert "version 2" in page and "system (apply_config)" in page
    assert "second pw" not in history + page and "Örders" not in history + page


def test_an_export_under_a_missing_key_keeps_deploy_true(settings):
    apply_text(ISSUE_EXAMPLE)
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]  # the key the rows use is gone
    item = config.export()["tenants"][0]["credentials"][0]
    assert item["deploy"] is True


def test_the_command_prints_the_variable_name_never_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_MAILBOX_PASSWORD", ENV["ACME_MAILBOX_PASSWORD"])
    path = tmp_path / "issue.yaml"
    path.write_text(ISSUE_EXAMPLE)
    out = io.StringIO()
    call_command("apply_config", str(path), "--dry-run", stdout=out)
    assert "password_env='ACME_MAILBOX_PASSWORD'" in out.getvalue() and "password=(secret)" in out.getvalue()
    assert "Örders" not in out.getvalue() and "Dry run: 5 changes, nothing written." in out.getvalue()
    assert not Tenant.objects.exists()


def test_prune_refuses_to_delete_a_credential_a_remaining_connection_uses():
    apply_text(ISSUE_EXAMPLE)
    without_credentials = ISSUE_EXAMPLE.replace(
        ISSUE_EXAMPLE[ISSUE_EXAMPLE.index("    credentials:"):ISSUE_EXAMPLE.index("    outbound:")], "    credentials: []\n"
    )
    errors = refused(without_credentials, env={}, prune=True)
    assert errors == [
        "tenants[0].credentials: --prune would delete credential 'acme-mailbox', which inbound connection 'orders', "
        "outbound connection 'smtp-main' still use; keep it in the file, or change their credential first"
    ]
    assert UserCredential.objects.count() == 1
    # Connections not managed by the file (no `inbound:` list) count too.
    only_outbound = without_credentials.split("    inbound:")[0].replace("credential: acme-mailbox", "credential: null")
    errors = refused(only_outbound, env={}, prune=True)
    assert errors == [
        "tenants[0].credentials: --prune would delete credential 'acme-mailbox', which inbound connection 'orders' "
        "still uses; keep it in the file, or change their credential first"
    ]
    # Once no connection names it, the prune deletes it.
    freed = without_credentials.replace("credential: acme-mailbox", "credential: null")
    plan = apply_text(freed, env={}, prune=True)
    assert ("delete", "credential", "acme/acme-mailbox") in [(c.action, c.kind, c.label) for c in plan.changes]
    assert not UserCredential.objects.exists()


def test_line_of_names_the_line_of_the_place():
    document = config.load(ISSUE_EXAMPLE)
    lines = ISSUE_EXAMPLE.splitlines()
    assert config.line_of(document, "tenants[0].inbound[0].post_processing: bad") == next(
        i + 1 for i, line in enumerate(lines) if "post_processing: mark_read" in line
    )
    assert config.line_of(document, "tenants[0].outbound[0].from: bad") == next(
        i + 1 for i, line in enumerate(lines) if line.strip().startswith("from:")
    )
    # A missing key: the line where its entry starts.
    assert config.line_of(document, "tenants[0].inbound[0].nothing: required") == next(
        i + 1 for i, line in enumerate(lines) if "- name: orders" in line
    )
    assert config.line_of(document, "(file): empty") is None
    assert config.line_of(document, "tenants[7].name: x") is not None  # the nearest known place


def test_a_connection_naming_no_artifact_is_refused():
    """Issue 20: references that cannot dangle (it was applied, with a Blocked checklist)."""
    text = ISSUE_EXAMPLE.replace("credential: acme-mailbox         # Credential Name", "credential: acme-nobody")
    assert refused(text) == [
        "tenants[0].outbound[0].credential: no credential named 'acme-nobody' exists in tenant 'acme' or is "
        "created by this file",
    ]
    assert not OutboundConnection.objects.exists() and not InboundConnection.objects.exists()


def test_deploying_as_a_user_without_the_role_is_refused_before_writing(tmp_path, monkeypatch):
    from connections.models import Membership, Role

    User = get_user_model()
    viewer = User.objects.create_user("viewer", password="x-login-pw-1")
    # A tenant the file creates: only a superuser can deploy there.
    errors = refused(ISSUE_EXAMPLE, user=viewer)
    assert errors == [
        "tenants[0].credentials[0].deploy: user 'viewer' may not deploy in tenant 'acme' "
        "(needs the operator or admin role there, or be a superuser)"
    ]
    assert not Tenant.objects.exists()
    apply_text(ISSUE_EXAMPLE.replace("deploy: true", "deploy: false"), user=viewer)
    Membership.objects.create(user=viewer, tenant=Tenant.objects.get(), role=Role.VIEWER)
    assert len(refused(ISSUE_EXAMPLE, user=viewer)) == 1
    assert UserCredential.objects.get().version == 0

    operator = User.objects.create_user("ops", password="x-login-pw-1")
    Membership.objects.create(user=operator, tenant=Tenant.objects.get(), role=Role.OPERATOR)
    assert apply_text(ISSUE_EXAMPLE, user=operator).applied
    deployment = CredentialDeployment.objects.get()
    assert (deployment.deployed_by, deployment.source) == (operator, "apply_config")
