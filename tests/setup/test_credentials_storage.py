"""Model, encryption at rest, undecryptable rows, validation."""
from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from connections.errors import CredentialError
from connections.models import CredentialStatus, UserCredential
from connections.services.setup import credentials as service

from .credentials_world import SECRET, make_credential, new_key


def raw_row(pk: int) -> dict[str, object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {UserCredential._meta.db_table} WHERE id = %s", [pk])
        names = [col[0] for col in cursor.description]
        return dict(zip(names, cursor.fetchone()))


def test_raw_table_holds_no_plaintext_password(world):
    cred = make_credential(world.tenant_a, deploy_as=world.superuser)
    row = raw_row(cred.pk)
    assert row["password"] is not None and row["deployed_password"] is not None
    secret_bytes = SECRET.encode()
    for column, value in row.items():
        blob = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
        assert secret_bytes not in blob, column
        assert SECRET.strip().encode() not in blob, column
        assert base64.b64encode(secret_bytes) not in blob, column
    # The stored values are Fernet tokens (version byte 0x80, url-safe base64), and the two
    # copies are encrypted separately.
    for column in ("password", "deployed_password"):
        token = bytes(row[column])
        assert base64.urlsafe_b64decode(token)[0] == 0x80
    assert bytes(row["password"]) != bytes(row["deployed_password"])
    # ...and they decrypt to the password, byte for byte (spaces and Unicode kept).
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.password == SECRET
    assert fresh.deployed_password == SECRET


@pytest.mark.parametrize("password", ["x", "ä" * 255, "🔑" * 255, " lead and trail ", "tab\there", "日本語パスワード"])
def test_any_unicode_password_round_trips(world, password):
    cred = make_credential(world.tenant_a, password=password)
    cred.full_clean()
    assert UserCredential.objects.get(pk=cred.pk).password == password


def test_password_longer_than_255_characters_is_refused(world):
    cred = UserCredential(tenant=world.tenant_a, name="long", username="u", password="a" * 256)
    with pytest.raises(ValidationError) as info:
        cred.full_clean()
    assert "password" in info.value.message_dict
    assert "a" * 256 not in str(info.value)


@pytest.mark.parametrize("name", ["with space", "slash/no", "ümlaut", "semi;colon", "a" * 151, ""])
def test_invalid_names_are_refused(world, name):
    cred = UserCredential(tenant=world.tenant_a, name=name, username="u", password="p")
    with pytest.raises(ValidationError) as info:
        cred.full_clean()
    assert "name" in info.value.message_dict


def test_valid_name_characters(world):
    cred = UserCredential(tenant=world.tenant_a, name="Mail.box_01-x" + "a" * 137, username="u", password="p")
    cred.full_clean()


def test_name_unique_per_tenant_but_reusable_in_another(world):
    make_credential(world.tenant_a, "shared")
    make_credential(world.tenant_b, "shared")  # other tenant: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        make_credential(world.tenant_a, "shared")


def test_undecryptable_row_gives_clear_error_naming_artifact(world, settings):
    settings.FERNET_KEYS = [new_key()]
    cred = make_credential(world.tenant_a, "payroll-box", deploy_as=world.superuser)
    settings.FERNET_KEYS = [new_key()]  # the old key is gone
    # Loading never raises a cryptography error: lists still work.
    loaded = UserCredential.objects.get(pk=cred.pk)
    assert loaded.name == "payroll-box"
    with pytest.raises(CredentialError) as info:
        loaded.password
    message = str(info.value)
    assert "payroll-box" in message and "Alpha Corp" in message
    assert "FERNET_KEYS" in message
    assert "InvalidToken" not in message and "Traceback" not in message
    # The runtime gets the same clear error, never garbage.
    with pytest.raises(CredentialError) as info:
        service.resolve_deployed(tenant_id=world.tenant_a.pk, name="payroll-box")
    assert "payroll-box" in str(info.value) and "deployed password" in str(info.value)
    assert loaded.decryption_problem() and "payroll-box" in loaded.decryption_problem()


def test_missing_keys_give_clear_errors(world, settings):
    cred = make_credential(world.tenant_a, "box")
    settings.FERNET_KEYS = []
    loaded = UserCredential.objects.get(pk=cred.pk)
    with pytest.raises(CredentialError, match="'box'.*FERNET_KEYS is empty"):
        loaded.password
    with pytest.raises(CredentialError, match="FERNET_KEYS is empty"):
        make_credential(world.tenant_a, "other")


def test_saving_an_undecryptable_row_keeps_its_ciphertext(world, settings):
    old = new_key()
    settings.FERNET_KEYS = [old]
    cred = make_credential(world.tenant_a, "keepme")
    before = bytes(raw_row(cred.pk)["password"])
    settings.FERNET_KEYS = [new_key()]
    loaded = UserCredential.objects.get(pk=cred.pk)
    loaded.description = "edited while the key was missing"
    service.save_artifact(credential=loaded)
    assert bytes(raw_row(cred.pk)["password"]) == before
    assert UserCredential.objects.get(pk=cred.pk).status == CredentialStatus.ERROR
    settings.FERNET_KEYS = [old]  # key back: nothing was lost
    assert UserCredential.objects.get(pk=cred.pk).password == SECRET


def test_keys_are_read_from_settings_each_time(world, settings):
    """No cached key on the field: changing FERNET_KEYS takes effect at once."""
    k1, k2 = new_key(), new_key()
    settings.FERNET_KEYS = [k1]
    c1 = make_credential(world.tenant_a, "one")
    settings.FERNET_KEYS = [k2]
    c2 = make_credential(world.tenant_a, "two")
    with pytest.raises(CredentialError):
        UserCredential.objects.get(pk=c1.pk).password
    assert UserCredential.objects.get(pk=c2.pk).password == SECRET
    settings.FERNET_KEYS = [k2, k1]
    assert UserCredential.objects.get(pk=c1.pk).password == SECRET


def test_repr_of_deployed_credential_hides_password(world):
    make_credential(world.tenant_a, "box", deploy_as=world.superuser)
    resolved = service.resolve_deployed(tenant_id=world.tenant_a.pk, name="box")
    assert resolved.password == SECRET
    assert SECRET not in repr(resolved) and SECRET not in str(resolved)
