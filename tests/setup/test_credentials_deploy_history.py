"""Every deploy is recorded (who, when, version), also a deploy without a user."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from connections.models import CredentialDeployment
from connections.services.setup import credentials as service

from .credentials_world import SECRET, make_credential
from .leaks import leaks


def test_admin_and_system_deploys_are_all_in_the_history(world):
    cred = make_credential(world.tenant_a, "sales-box")
    client = world.client(world.operator_a)
    client.post(reverse("admin:connections_usercredential_deploy", args=[cred.pk]))
    service.deploy(credential_id=cred.pk, user=None, source="apply_config")

    rows = list(CredentialDeployment.objects.filter(credential=cred).order_by("version"))
    assert [(d.version, d.deployed_by, d.deployed_by_name, d.source) for d in rows] == [
        (1, world.operator_a, "operator_a", "admin"),
        (2, None, "", "apply_config"),
    ]
    history = client.get(reverse("admin:connections_usercredential_history", args=[cred.pk])).content.decode()
    assert "operator_a (admin)" in history and "system (apply_config)" in history
    assert "Deployed version 1" in history  # Django's own log entry for the user's deploy
    page = client.get(reverse("admin:connections_usercredential_change", args=[cred.pk])).content.decode()
    assert "version 2" in page and "version 1" in page
    import re

    deployed_by = re.search(r'field-deployed_by_display.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert deployed_by and deployed_by.group(1).strip() == "system (apply_config)"  # the deploy in force
    assert leaks(history, SECRET) == [] and leaks(page, SECRET) == []

    # Another tenant's admin sees neither the page nor the deploys.
    foreign = world.client(world.admin_b).get(reverse("admin:connections_usercredential_history", args=[cred.pk]))
    assert foreign.status_code in (302, 404) and b"apply_config" not in foreign.content

    # The record survives the deleted user, by name.
    world.operator_a.delete()
    assert CredentialDeployment.objects.get(credential=cred, version=1).actor == "operator_a (admin)"


def test_one_record_per_version(world):
    cred = make_credential(world.tenant_a, "box", deploy_as=world.superuser)
    with pytest.raises(IntegrityError), transaction.atomic():
        CredentialDeployment.objects.create(credential=cred, version=1, deployed_at=cred.deployed_at)


def test_a_refused_deploy_records_nothing(world, settings):
    from cryptography.fernet import Fernet

    cred = make_credential(world.tenant_a, "box")
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(Exception):
        service.deploy(credential_id=cred.pk, user=world.superuser)
    assert not CredentialDeployment.objects.filter(credential=cred).exists()
