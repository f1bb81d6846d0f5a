"""Configuration as code: export_config / apply_config (issue 9)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from connections.models import (
    InboundConnection,
    OutboundConnection,
    ScheduleKind,
    StoredMessage,
    Tenant,
    UserCredential,
)
from connections.services.setup import config
from connections.services.setup import credentials as credential_service
from connections.services.setup.config import connections as config_connections

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[3] / "docs" / "config.md"
ENV = {"ACME_MAILBOX_PASSWORD": "s3cret-orders", "GLOBEX_SUPPORT_PASSWORD": "pw-globex"}

# A real certificate: apply_config validates trusted_ca as PEM.
PEM = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBlTCCATugAwIBAgIUKhZe3rzhu39b8cbmruu0bsGveOQwCgYIKoZIzj0EAwIw\n"
    "HzEdMBsGA1UEAwwUQUNNRSBFeGFtcGxlIFJvb3QgQ0EwIBcNMjYxMTIxMTAwMTU0\n"
    "WhgPMjEyNjEwMjgxMDAxNTRaMB8xHTAbBgNVBAMMFEFDTUUgRXhhbXBsZSBSb290\n"
    "IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETlg/LSrsYTXgzIFgu7gWeDnk\n"
    "hCwdoERsLIsM3An5nsYkd0qIYoWnmjesulxf/oU2T33hi4feTCEWUUU1myaa+6NT\n"
    "MFEwHQYDVR0OBBYEFEQb/NgeNZPRvW3wd0FzLl+F1DmwMB8GA1UdIwQYMBaAFEQb\n"
    "/NgeNZPRvW3wd0FzLl+F1DmwMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID\n"
    "SAAwRQIgeHOyxzZ6HDR1CJ/xW6jG6EYjVv8nf8RHeaPOtpRI1iECIQDde6Qe5uXZ\n"
    "XAzP3LZ0T1ttcFqkKz52uzK+q0HGtkhqEA==\n"
    "-----END CERTIFICATE-----\n"
)

BASE = """
tenants:
  - slug: acme
    name: ACME Corp
    credentials:
      - name: acme-mailbox
        description: Orders mailbox owner
        user: orders@acme.example
        password_env: ACME_MAILBOX_PASSWORD
        deploy: true
    outbound:
      - name: smtp-main
        host: smtp.acme.example
        port: 587
        protection: starttls_mandatory
        authentication: encrypted
        credential: acme-mailbox
        from: orders@acme.example
    inbound:
      - name: orders
        protocol: imap
        host: imap.acme.example
        port: 993
        protection: ssl_tls
        authentication: plain
        credential: acme-mailbox
        post_processing: mark_read
        schedule: {every: 300}
"""


def apply_text(text: str, env=ENV, **kw) -> config.Plan:
    return config.apply(config.load(text), environ=env, **kw)


def counts() -> tuple[int, int, int, int]:
    return (
        Tenant.objects.count(), UserCredential.objects.count(),
        OutboundConnection.objects.count(), InboundConnection.objects.count(),
    )


def docs_example() -> str:
    text = DOCS.read_text()
    match = re.search(r"<!-- complete-example -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "docs/config.md must hold the complete example"
    return match.group(1)


# --------------------------------------------------------------------------- apply

def test_apply_creates_everything_and_deploys():
    plan = apply_text(BASE)
    assert plan.applied
    actions = [(c.action, c.kind, c.label) for c in plan.changes]
    assert actions == [
        ("create", "tenant", "acme"),
        ("create", "credential", "acme/acme-mailbox"),
        ("deploy", "credential", "acme/acme-mailbox"),
        ("create", "outbound", "acme/smtp-main"),
        ("create", "inbound", "acme/orders"),
    ]
    cred = UserCredential.objects.get(name="acme-mailbox")
    assert cred.password == "s3cret-orders"
    assert cred.version == 1 and cred.deployed_password == "s3cret-orders"
    resolved = credential_service.resolve_deployed(tenant_id=cred.tenant_id, name="acme-mailbox")
    assert resolved.username == "orders@acme.example"
    inbound = InboundConnection.objects.get()
    assert (inbound.port, inbound.protection, inbound.credential_name) == (993, "ssl_tls", "acme-mailbox")
    assert inbound.schedule_kind == ScheduleKind.INTERVAL and inbound.schedule_every == 300
    out = OutboundConnection.objects.get()
    assert out.default_from == "orders@acme.example" and out.timeout == 30  # default


def test_the_documented_complete_example_applies_and_round_trips(monkeypatch):
    example = docs_example()
    env = {name: f"pw-{name.lower()}" for name in re.findall(r"(?:password|secret)_env: (\w+)", example)}
    plan = apply_text(example, env=env)
    assert plan.applied and not plan.empty
    assert apply_text(example, env=env).empty
    # The example uses every key: the export gives the same document back.
    assert config.export() == config.load(example)


def test_applying_the_same_file_twice_changes_nothing_the_second_time():
    apply_text(BASE)
    version = UserCredential.objects.get().version
    second = apply_text(BASE)
    assert second.empty and not second.applied
    assert str(second) == "No changes."
    assert UserCredential.objects.get().version == version  # not deployed again


def test_command_says_no_changes_the_second_time(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "tm.yaml"
    path.write_text(BASE)
    out = io.StringIO()
    call_command("apply_config", str(path), stdout=out)
    assert "create tenant acme" in out.getvalue() and "5 changes applied." in out.getvalue()
    out = io.StringIO()
    call_command("apply_config", str(path), stdout=out)
    assert out.getvalue().strip() == "No changes."


def test_update_lists_only_the_fields_that_change():
    apply_text(BASE)
    changed = BASE.replace("port: 993", "port: 995").replace("schedule: {every: 300}", "schedule: {cron: \"*/5 * * * *\"}")
    plan = apply_text(changed)
    assert [str(c) for c in plan.changes] == [
        "update inbound acme/orders: port: 993 -> 995; schedule: {every: 300} -> {cron: '*/5 * * * *'}"
    ]
    inbound = InboundConnection.objects.get()
    assert inbound.port == 995 and inbound.schedule_kind == ScheduleKind.CRON
    assert inbound.schedule_cron == "*/5 * * * *"


def test_a_changed_password_is_updated_and_deployed_again_and_never_printed():
    apply_text(BASE)
    plan = apply_text(BASE, env={**ENV, "ACME_MAILBOX_PASSWORD": "rotated-pw"})
    text = str(plan)
    assert [(c.action, c.kind) for c in plan.changes] == [("update", "credential"), ("deploy", "credential")]
    assert "password" in text and "rotated-pw" not in text and "s3cret" not in text
    cred = UserCredential.objects.get()
    assert cred.version == 2 and cred.deployed_password == "rotated-pw"


def test_a_changed_user_name_without_deploy_leaves_the_deployed_values():
    apply_text(BASE)
    plan = apply_text(BASE.replace("user: orders@", "user: sales@").replace("deploy: true", "deploy: false"))
    assert [c.action for c in plan.changes] == ["update"]
    cred = UserCredential.objects.get()
    assert cred.username == "sales@acme.example" and cred.deployed_username == "orders@acme.example"
    assert cred.has_undeployed_changes
    # Now the file asks for the deploy: only the deploy is left to do.
    plan = apply_text(BASE.replace("user: orders@", "user: sales@"))
    assert [c.action for c in plan.changes] == ["deploy"]
    assert UserCredential.objects.get().deployed_username == "sales@acme.example"


def test_an_existing_credential_keeps_its_password_when_the_variable_is_unset():
    apply_text(BASE)
    plan = apply_text(BASE, env={})
    assert plan.empty
    assert any("ACME_MAILBOX_PASSWORD is not set" in n for n in plan.notes)
    assert UserCredential.objects.get().password == "s3cret-orders"


def test_a_reference_to_a_credential_nobody_has_is_refused_with_its_line(tmp_path, monkeypatch):
    text = BASE.replace("credential: acme-mailbox\n        post", "credential: nobody-has-this\n        post")
    assert refused(text) == [
        "tenants[0].inbound[0].credential: no credential named 'nobody-has-this' exists in tenant 'acme' or is "
        "created by this file",
    ]
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "dangling.yaml"
    path.write_text(text)
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("apply_config", str(path), stderr=err)
    line = text.splitlines().index("        credential: nobody-has-this") + 1
    assert info.value.returncode == 1
    assert err.getvalue().startswith(f"{path}:{line}: tenants[0].inbound[0].credential: no credential named")
    assert counts() == (0, 0, 0, 0)
    # One that exists already (not in the file), or that the file creates, is fine; a near miss is named.
    apply_text(BASE)
    no_creds = BASE.replace("""    credentials:
      - name: acme-mailbox
        description: Orders mailbox owner
        user: orders@acme.example
        password_env: ACME_MAILBOX_PASSWORD
        deploy: true
""", "")
    assert apply_text(no_creds).empty
    assert refused(no_creds.replace("credential: acme-mailbox\n        from", "credential: ACME-mailbox\n        from")) == [
        "tenants[0].outbound[0].credential: no credential named 'ACME-mailbox' exists in tenant 'acme' or is "
        "created by this file (names are case-sensitive: did you mean 'acme-mailbox'?)",
    ]


def test_unquoted_off_is_read_as_the_protection_off():
    text = BASE.replace("protection: ssl_tls", "protection: off").replace("authentication: plain", "authentication: none")
    apply_text(text)
    assert InboundConnection.objects.get().protection == "off"
    assert "protection: 'off'" in config.dump(config.export())


# --------------------------------------------------------------------------- dry run

def test_dry_run_prints_the_changes_and_writes_nothing(tmp_path, monkeypatch):
    plan = apply_text(BASE, dry_run=True)
    assert plan.dry_run and not plan.applied and len(plan.changes) == 5
    assert counts() == (0, 0, 0, 0)
    assert str(plan).endswith("Dry run: 5 changes, nothing written.")
    apply_text(BASE)
    before = UserCredential.objects.get().version
    plan = apply_text(BASE.replace("port: 587", "port: 2525"), env={**ENV, "ACME_MAILBOX_PASSWORD": "x2"}, dry_run=True)
    assert {c.action for c in plan.changes} == {"update", "deploy"}
    assert OutboundConnection.objects.get().port == 587
    cred = UserCredential.objects.get()
    assert cred.version == before and cred.password == "s3cret-orders"

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "tm.yaml"
    path.write_text(BASE.replace("port: 587", "port: 2525"))
    out = io.StringIO()
    call_command("apply_config", str(path), "--dry-run", stdout=out)
    assert "update outbound acme/smtp-main: port: 587 -> 2525" in out.getvalue()
    assert OutboundConnection.objects.get().port == 587


# --------------------------------------------------------------------------- invalid files

def refused(text: str, env=ENV, **kw) -> list[str]:
    with pytest.raises(config.ConfigValidationError) as info:
        apply_text(text, env=env, **kw)
    return info.value.errors


def test_bad_value_names_the_place_and_the_allowed_values():
    errors = refused(BASE.replace("protection: ssl_tls", "protection: tls"))
    assert errors == [
        "tenants[0].inbound[0].protection: 'tls' is not one of off, starttls_mandatory, starttls_optional, ssl_tls"
    ]
    assert counts() == (0, 0, 0, 0)


def test_unknown_keys_are_refused_with_a_suggestion():
    text = BASE.replace("        port: 587\n", "        prot: 587\n").replace("  - slug: acme\n", "  - slug: acme\n    colour: red\n")
    errors = refused(text)
    assert "tenants[0].outbound[0].prot: unknown key (did you mean 'port'?)" in errors
    assert any(e.startswith("tenants[0].colour: unknown key") for e in errors)
    assert counts() == (0, 0, 0, 0)


def test_every_error_is_listed_and_nothing_is_changed():
    apply_text(BASE)
    before = counts()
    text = (
        BASE.replace("port: 993", "port: 99999")
        .replace("timeout: 30", "")
        .replace("selection: unread", "")
        .replace("schedule: {every: 300}", "schedule: {every: soon}")
        .replace("authentication: encrypted", "authentication: cram")
        .replace("from: orders@acme.example", "from: orders@acme.example\n        max_per_session: many")
        + "      - name: archive\n        host: imap.acme.example\n        post_processing: move\n"
        "        schedule: {weekdays: [mon, fun], between: [\"18:00\", \"08:00\"]}\n        timezone: Mars/Base\n"
    )
    errors = refused(text)
    joined = "\n".join(errors)
    assert "tenants[0].inbound[0].port: Ensure this value is less than or equal to 65535." in errors
    assert "tenants[0].inbound[0].schedule.every: expected a whole number of seconds >= 1, got 'soon'" in errors
    assert "tenants[0].outbound[0].authentication: 'cram' is not one of none, plain, encrypted, oauth2" in errors
    assert "tenants[0].outbound[0].max_per_session: expected an integer, got a string 'many'" in errors
    assert "tenants[0].inbound[1].archive_folder: required when post_processing is move" in errors
    assert "tenants[0].inbound[1].timezone: 'Mars/Base' is not a known time zone (e.g. UTC, Europe/Berlin)" in errors
    assert "tenants[0].inbound[1].schedule.weekdays" in joined
    assert "tenants[0].inbound[1].schedule.between: the start 18:00 must be before the end 08:00" in errors
    assert len(errors) == 8, joined
    assert counts() == before
    assert InboundConnection.objects.get().port == 993


def test_missing_environment_variable_for_a_new_credential_is_refused():
    errors = refused(BASE, env={})
    assert errors == [
        "tenants[0].credentials[0].password_env: the environment variable ACME_MAILBOX_PASSWORD is not set "
        "(it holds the password of the new credential 'acme-mailbox')"
    ]
    assert counts() == (0, 0, 0, 0)


def test_empty_environment_variable_is_refused():
    errors = refused(BASE, env={"ACME_MAILBOX_PASSWORD": ""})
    assert errors == ["tenants[0].credentials[0].password_env: the environment variable ACME_MAILBOX_PASSWORD is empty"]


def test_duplicate_names_are_refused():
    doubled = BASE + BASE.split("tenants:\n", 1)[1]
    errors = refused(doubled)
    assert "tenants[1].slug: duplicate tenant 'acme' (also at tenants[0])" in errors
    dup_conn = BASE.replace(
        "    inbound:\n", "      - name: smtp-main\n        host: other.example\n        from: a@b.example\n    inbound:\n"
    )
    errors = refused(dup_conn)
    assert errors == ["tenants[0].outbound[1].name: duplicate outbound connection 'smtp-main' (also at tenants[0].outbound[0])"]
    dup_key = BASE.replace("        port: 993\n", "        port: 993\n        port: 143\n")
    errors = refused(dup_key)
    assert len(errors) == 1 and "the key 'port' is given twice" in errors[0] and errors[0].startswith("line ")
    assert counts() == (0, 0, 0, 0)


def test_structure_errors():
    assert refused("") == ["(file): the file is empty; expected `tenants:` with a list of tenants"]
    assert refused("tenants: {slug: acme}") == ["tenants: expected a list, got a mapping"]
    assert refused("tenants:\n  - slug: acme\n") == ["tenants[0].name: required"]
    errs = refused("tenants: [\n")
    assert len(errs) == 1 and errs[0].startswith("line ") and "not valid YAML" in errs[0]


def test_pop3_rules():
    pop = BASE.replace("protocol: imap", "protocol: pop3").replace("port: 993", "port: 995")
    errors = refused(pop.replace("post_processing: mark_read", "post_processing: mark_read\n        folder: INBOX"))
    assert errors == [
        "tenants[0].inbound[0].folder: applies to imap only; remove it for a pop3 connection",
        "tenants[0].inbound[0].post_processing: 'mark_read' is not one of delete, keep (pop3)",
    ]
    apply_text(pop.replace("        post_processing: mark_read\n", ""))
    assert InboundConnection.objects.get().post_processing == "keep"


def test_command_exits_1_listing_every_error(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("protection: ssl_tls", "protection: tls").replace("port: 587", "port: x"))
    err = io.StringIO()
    with pytest.raises(CommandError) as info:
        call_command("apply_config", str(path), stderr=err)
    assert info.value.returncode == 1
    assert "2 errors in" in str(info.value), err.getvalue()
    lines = path.read_text().splitlines()
    proto_line = lines.index("        protection: tls") + 1
    port_line = lines.index("        port: x") + 1
    reported = err.getvalue().splitlines()
    # FILE:LINE: place: message, in the order of the file.
    assert reported == [
        f"{path}:{port_line}: tenants[0].outbound[0].port: expected an integer, got a string 'x'",
        f"{path}:{proto_line}: tenants[0].inbound[0].protection: 'tls' is not one of off, starttls_mandatory, "
        "starttls_optional, ssl_tls",
    ]
    assert counts() == (0, 0, 0, 0)


def test_command_reads_stdin(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("sys.stdin", io.StringIO(BASE))
    out = io.StringIO()
    call_command("apply_config", "-", stdout=out)
    assert "5 changes applied." in out.getvalue()


# --------------------------------------------------------------------------- prune

def test_prune_deletes_what_the_file_no_longer_names_within_its_tenants():
    apply_text(BASE)
    other = "tenants:\n  - slug: globex\n    name: Globex\n"
    apply_text(other)
    smaller = BASE.split("    outbound:\n")[0] + "    outbound: []\n    inbound: []\n"
    plan = apply_text(smaller)  # without --prune nothing is deleted
    assert plan.empty and counts() == (2, 1, 1, 1)
    plan = apply_text(smaller.replace("    credentials:\n", "    credentials: []\n    old:\n").split("    old:\n")[0]
                      + "    outbound: []\n    inbound: []\n", prune=True, dry_run=True)
    assert counts() == (2, 1, 1, 1)
    assert {(c.action, c.label) for c in plan.changes} == {
        ("delete", "acme/smtp-main"), ("delete", "acme/orders"), ("delete", "acme/acme-mailbox"),
    }
    plan = apply_text(smaller, prune=True)
    assert [(c.action, c.kind, c.label) for c in plan.changes] == [
        ("delete", "outbound", "acme/smtp-main"), ("delete", "inbound", "acme/orders"),
    ]
    assert "tenant globex is not in the file and is kept (apply_config never deletes tenants)." in plan.notes
    assert counts() == (2, 1, 0, 0)
    assert apply_text(smaller, prune=True).empty


def test_prune_leaves_alone_the_lists_a_tenant_entry_does_not_give():
    apply_text(BASE)
    only_inbound = BASE.split("    credentials:\n")[0] + "    inbound: []\n"
    plan = apply_text(only_inbound, prune=True)
    assert [(c.action, c.label) for c in plan.changes] == [("delete", "acme/orders")]
    assert counts() == (1, 1, 1, 0)


def test_prune_refuses_to_delete_a_connection_with_stored_mail():
    apply_text(BASE)
    inbound = InboundConnection.objects.get()
    StoredMessage.objects.create(
        tenant=inbound.tenant, connection=inbound, server_key="imap:1:1", fetched_at="2026-01-01T00:00:00Z",
        raw="raw/x.eml", raw_sha256="0" * 64,
    )
    errors = refused(BASE.split("    inbound:\n")[0] + "    inbound: []\n", prune=True)
    assert errors == [
        "tenants[0].inbound: --prune would delete inbound connection 'orders', which has stored messages; "
        "keep it in the file (enabled: false to stop it) or delete its messages first"
    ]
    assert counts() == (1, 1, 1, 1)


def test_the_schedulers_rules_apply_and_the_next_poll_is_scheduled():
    errors = refused(BASE.replace("schedule: {every: 300}", "schedule: {every: 5}"))
    assert errors == ["tenants[0].inbound[0].schedule: The interval must be at least 10 seconds."]
    apply_text(BASE)
    inbound = InboundConnection.objects.get()
    assert inbound.next_poll_at is not None
    apply_text(BASE.replace("        post_processing: mark_read\n", "        post_processing: mark_read\n        enabled: false\n"))
    assert InboundConnection.objects.get().next_poll_at is None


def test_a_missing_password_env_key_is_reported_once():
    errors = refused(BASE.replace("        password_env: ACME_MAILBOX_PASSWORD\n", ""))
    assert errors == [
        "tenants[0].credentials[0].password_env: required (the name of the environment variable with the password)"
    ]


def test_deploys_can_be_recorded_as_a_user(tmp_path, monkeypatch):
    from django.contrib.auth import get_user_model

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    ops = get_user_model().objects.create_superuser("deployer", "d@example.com", "pw")
    path = tmp_path / "tm.yaml"
    path.write_text(BASE)
    call_command("apply_config", str(path), "--user", "deployer", stdout=io.StringIO())
    cred = UserCredential.objects.get()
    assert cred.deployed_by == ops and cred.version == 1
    with pytest.raises(CommandError, match="No active user named 'ghost'"):
        call_command("apply_config", str(path), "--user", "ghost", stdout=io.StringIO())


def test_check_exits_2_on_drift_and_writes_nothing(tmp_path, monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "tm.yaml"
    path.write_text(BASE)
    with pytest.raises(CommandError) as info:
        call_command("apply_config", str(path), "--check", stdout=io.StringIO())
    assert info.value.returncode == 2 and counts() == (0, 0, 0, 0)
    call_command("apply_config", str(path), stdout=io.StringIO())
    out = io.StringIO()
    call_command("apply_config", str(path), "--check", stdout=out)
    assert out.getvalue().strip() == "No changes."


def test_the_admin_forms_rules_apply_too():
    text = (
        BASE.replace("from: orders@acme.example", "from: not an address")
        .replace("post_processing: mark_read", "post_processing: move\n        archive_folder: INBOX\n        lock_timeout: 5")
    )
    errors = refused(text)
    assert "tenants[0].inbound[0].archive_folder: The archive folder must differ from the polled folder." in errors
    assert "tenants[0].inbound[0].lock_timeout: Use at least 60 seconds: a poll that outlives its lock could run twice." in errors
    assert any(e.startswith("tenants[0].outbound[0].from: 'not an address' is not a valid e-mail address") for e in errors), errors
    assert len(errors) == 3


def test_an_update_writes_only_the_changed_settings(monkeypatch):
    """Poll state a worker wrote meanwhile is not overwritten with what apply read before."""
    from django.utils import timezone

    apply_text(BASE)
    document = config.load(BASE.replace("port: 993", "port: 995"))
    inbound = InboundConnection.objects.get()
    original_copy = config_connections.copy

    def copy_then_worker_writes(instance, values):  # the worker's update lands between read and write
        clone = original_copy(instance, values)
        if isinstance(instance, InboundConnection):
            InboundConnection.objects.filter(pk=inbound.pk).update(last_error="timeout", consecutive_failures=3)
        return clone

    monkeypatch.setattr(config_connections, "copy", copy_then_worker_writes)
    config.apply(document, environ=ENV)
    inbound.refresh_from_db()
    assert inbound.port == 995
    assert (inbound.last_error, inbound.consecutive_failures) == ("timeout", 3)
    assert inbound.updated_at <= timezone.now()
