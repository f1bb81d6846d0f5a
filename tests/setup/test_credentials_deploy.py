"""Deploy: copies into the deployed fields, versions, history, the runtime uses only deployed values."""
from __future__ import annotations

import threading

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from connections.errors import CredentialError, PermissionDenied
from connections.models import CredentialStatus, UserCredential
from connections.services.setup import credentials as service

from .credentials_world import SECRET, make_credential, new_key


def history(cred: UserCredential) -> list[LogEntry]:
    ct = ContentType.objects.get_for_model(UserCredential)
    return list(LogEntry.objects.filter(content_type=ct, object_id=str(cred.pk)).order_by("pk"))


def test_new_artifact_is_stored_not_deployed(world):
    cred = make_credential(world.tenant_a)
    assert cred.status == CredentialStatus.STORED and cred.version == 0
    assert cred.has_undeployed_changes
    with pytest.raises(CredentialError, match="never been deployed"):
        service.resolve_deployed(tenant_id=world.tenant_a.pk, name=cred.name)


def test_deploy_copies_versions_and_records_history(world):
    cred = make_credential(world.tenant_a)
    deployed = service.deploy(credential_id=cred.pk, user=world.operator_a)
    assert deployed.version == 1 and deployed.status == CredentialStatus.DEPLOYED
    assert deployed.deployed_by == world.operator_a and deployed.deployed_at is not None
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.deployed_username == "owner@example.test" and fresh.deployed_password == SECRET
    assert not fresh.has_undeployed_changes
    entries = history(cred)
    assert [(e.user, e.action_flag, e.change_message) for e in entries] == [
        (world.operator_a, CHANGE, "Deployed version 1")
    ]
    assert entries[0].get_change_message() == "Deployed version 1"

    service.deploy(credential_id=cred.pk, user=world.admin_a)
    assert [e.change_message for e in history(cred)] == ["Deployed version 1", "Deployed version 2"]
    assert history(cred)[-1].user == world.admin_a
    assert UserCredential.objects.get(pk=cred.pk).version == 2


def test_edit_keeps_deployed_values_in_force_until_deployed_again(world):
    cred = make_credential(world.tenant_a, deploy_as=world.superuser)
    edited = UserCredential.objects.get(pk=cred.pk)
    edited.username = "new-owner@example.test"
    service.save_artifact(credential=edited, password="the new one")
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.status == CredentialStatus.STORED and fresh.has_undeployed_changes
    runtime = service.resolve_deployed(tenant_id=world.tenant_a.pk, name=cred.name)
    assert (runtime.username, runtime.password, runtime.version) == ("owner@example.test", SECRET, 1)

    service.deploy(credential_id=cred.pk, user=world.superuser)
    runtime = service.resolve_deployed(tenant_id=world.tenant_a.pk, name=cred.name)
    assert (runtime.username, runtime.password, runtime.version) == ("new-owner@example.test", "the new one", 2)
    assert not UserCredential.objects.get(pk=cred.pk).has_undeployed_changes


def test_setting_the_same_password_again_is_not_a_change(world):
    cred = make_credential(world.tenant_a, deploy_as=world.superuser)
    service.save_artifact(credential=UserCredential.objects.get(pk=cred.pk), password=SECRET)
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert not fresh.has_undeployed_changes and fresh.status == CredentialStatus.DEPLOYED


def test_empty_password_refused(world):
    with pytest.raises(CredentialError, match="must not be empty"):
        make_credential(world.tenant_a, password="")


def test_deploy_needs_operator_role_in_that_tenant(world):
    cred = make_credential(world.tenant_a)
    for user in (world.viewer_a, world.admin_b):
        with pytest.raises(PermissionDenied):
            service.deploy(credential_id=cred.pk, user=user)
    assert UserCredential.objects.get(pk=cred.pk).version == 0
    assert history(cred) == []


def test_deploy_of_undecryptable_artifact_fails_clearly_and_marks_error(world, settings):
    settings.FERNET_KEYS = [new_key()]
    cred = make_credential(world.tenant_a, "orphan")
    settings.FERNET_KEYS = [new_key()]
    with pytest.raises(CredentialError) as info:
        service.deploy(credential_id=cred.pk, user=world.operator_a)
    assert "'orphan'" in str(info.value) and "Alpha Corp" in str(info.value)
    raw = UserCredential.objects.filter(pk=cred.pk).values("status", "status_detail", "version").get()
    assert raw["status"] == CredentialStatus.ERROR and "orphan" in raw["status_detail"]
    assert raw["version"] == 0 and history(cred) == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_deploys_get_distinct_versions(world):
    """select_for_update serialises deploys: N deploys give versions 1..N, none lost."""
    cred = make_credential(world.tenant_a)
    versions: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            versions.append(service.deploy(credential_id=cred.pk, user=world.operator_a).version)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert len(history(cred)) == 6


def test_used_by_and_delete_refusal_in_service(world):
    from connections.models import InboundConnection, OutboundConnection

    cred = make_credential(world.tenant_a, "shared-box")
    other_tenant = make_credential(world.tenant_b, "shared-box")
    InboundConnection.objects.create(tenant=world.tenant_a, name="in-1", host="h", credential_name="shared-box")
    OutboundConnection.objects.create(
        tenant=world.tenant_a, name="out-1", host="h", credential_name="shared-box", default_from="a@b.test"
    )
    InboundConnection.objects.create(tenant=world.tenant_b, name="in-b", host="h", credential_name="other")
    assert [str(u) for u in service.used_by(credential=cred)] == [
        "inbound connection 'in-1'", "outbound connection 'out-1'"
    ]
    assert service.used_by(credential=other_tenant) == []
    counts = dict(service.with_usage_counts(qs=UserCredential.objects.all()).values_list("pk", "usage_count"))
    assert counts == {cred.pk: 2, other_tenant.pk: 0}

    with pytest.raises(CredentialError) as info:
        service.delete(credential_id=cred.pk)
    assert "'in-1'" in str(info.value) and "'out-1'" in str(info.value)
    assert UserCredential.objects.filter(pk=cred.pk).exists()
    service.delete(credential_id=other_tenant.pk)  # unused in its own tenant: deleted
    assert not UserCredential.objects.filter(pk=other_tenant.pk).exists()


def test_edit_saved_from_a_stale_copy_never_undoes_a_deploy(world):
    """An admin form loaded before someone else deployed must not write old deployed values back."""
    cred = make_credential(world.tenant_a, deploy_as=world.superuser)
    stale = UserCredential.objects.get(pk=cred.pk)  # version 1, as a form would have it
    service.save_artifact(credential=UserCredential.objects.get(pk=cred.pk), password="second")
    service.deploy(credential_id=cred.pk, user=world.operator_a)  # version 2 = "second"
    stale.description = "edited meanwhile"
    service.save_artifact(credential=stale)  # no new password typed: the stored one is kept
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.version == 2 and fresh.deployed_password == "second"
    assert fresh.deployed_by == world.operator_a and fresh.description == "edited meanwhile"
    assert fresh.password == "second" and not fresh.has_undeployed_changes
    assert fresh.status == CredentialStatus.DEPLOYED
