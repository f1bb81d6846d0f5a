"""Key rotation with real key lists: new,old decrypts; rotate_credentials; new alone works."""
from __future__ import annotations

import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from connections.errors import CredentialError
from connections.models import CredentialStatus, UserCredential
from connections.services.setup import credentials as service

from .credentials_world import SECRET, make_credential, new_key
from .test_credentials_storage import raw_row


def _tokens(pk: int) -> tuple[bytes, bytes | None]:
    row = raw_row(pk)
    return bytes(row["password"]), (bytes(row["deployed_password"]) if row["deployed_password"] else None)


def test_rotation_procedure(world, settings, capsys):
    old, new = new_key(), new_key()
    settings.FERNET_KEYS = [old]
    deployed = make_credential(world.tenant_a, "deployed", deploy_as=world.superuser)
    stored = make_credential(world.tenant_b, "stored-only", password="other ü secret")
    edited = make_credential(world.tenant_a, "edited", deploy_as=world.superuser)
    service.save_artifact(credential=UserCredential.objects.get(pk=edited.pk), password="next one")

    # Step 1: new key first, old key after it. Everything still decrypts.
    settings.FERNET_KEYS = [new, old]
    assert UserCredential.objects.get(pk=deployed.pk).deployed_password == SECRET
    assert UserCredential.objects.get(pk=stored.pk).password == "other ü secret"

    # Step 2: rotate.
    call_command("rotate_credentials")
    out = capsys.readouterr().out
    assert "3 User Credentials artifact(s) checked" in out
    assert "re-encrypted 3 artifact(s) (5 encrypted value(s))" in out
    for pk in (deployed.pk, stored.pk, edited.pk):
        for token in _tokens(pk):
            if token is not None:
                assert Fernet(new).decrypt(token)  # encrypted with the new key ...
                with pytest.raises(Exception):
                    Fernet(old).decrypt(token)  # ... and no longer with the old one

    # Step 3: remove the old key. Everything decrypts with the new one alone.
    settings.FERNET_KEYS = [new]
    d = UserCredential.objects.get(pk=deployed.pk)
    assert (d.password, d.deployed_password) == (SECRET, SECRET)
    assert UserCredential.objects.get(pk=stored.pk).password == "other ü secret"
    e = UserCredential.objects.get(pk=edited.pk)
    assert (e.password, e.deployed_password) == ("next one", SECRET)
    assert e.has_undeployed_changes  # rotation is not an edit nor a deploy
    assert service.resolve_deployed(tenant_id=world.tenant_a.pk, name="edited").password == SECRET


def test_rotation_without_old_key_fails_naming_artifacts_and_changes_nothing(world, settings, capsys):
    old, new = new_key(), new_key()
    settings.FERNET_KEYS = [old]
    lost = make_credential(world.tenant_a, "lost-box", deploy_as=world.superuser)
    settings.FERNET_KEYS = [new]
    fine = make_credential(world.tenant_b, "fine-box")
    before = _tokens(lost.pk)

    with pytest.raises(CommandError) as info:
        call_command("rotate_credentials")
    captured = capsys.readouterr()
    assert "could not be decrypted" in str(info.value)
    assert "'lost-box' in tenant 'Alpha Corp'" in captured.err
    assert "password" in captured.err and "deployed password" in captured.err
    assert "fine-box" not in captured.err
    assert "InvalidToken" not in captured.err + captured.out + str(info.value)
    assert _tokens(lost.pk) == before  # left exactly as it was
    assert UserCredential.objects.get(pk=lost.pk).status == CredentialStatus.ERROR
    assert UserCredential.objects.get(pk=fine.pk).password == SECRET

    # Put the old key back (after the new one) and rotate again: all good, status settled.
    settings.FERNET_KEYS = [new, old]
    call_command("rotate_credentials")
    settings.FERNET_KEYS = [new]
    recovered = UserCredential.objects.get(pk=lost.pk)
    assert recovered.deployed_password == SECRET
    assert recovered.status == CredentialStatus.DEPLOYED and recovered.status_detail == ""


def test_dry_run_writes_nothing(world, settings, capsys):
    old, new = new_key(), new_key()
    settings.FERNET_KEYS = [old]
    cred = make_credential(world.tenant_a, "box")
    before = _tokens(cred.pk)
    settings.FERNET_KEYS = [new, old]
    call_command("rotate_credentials", "--dry-run")
    assert "would re-encrypt 1 artifact(s)" in capsys.readouterr().out
    assert _tokens(cred.pk) == before
    settings.FERNET_KEYS = [new]
    with pytest.raises(CredentialError):
        UserCredential.objects.get(pk=cred.pk).password


def test_rotation_leaves_updated_at_alone(world, settings):
    old, new = new_key(), new_key()
    settings.FERNET_KEYS = [old]
    cred = make_credential(world.tenant_a, "box")
    settings.FERNET_KEYS = [new, old]
    call_command("rotate_credentials")
    assert UserCredential.objects.get(pk=cred.pk).updated_at == cred.updated_at


def _manage(*args: str, keys: list[str]) -> "subprocess.CompletedProcess[str]":
    """Run manage.py as an operator does, with FERNET_KEYS from the environment."""
    import os
    import subprocess
    from pathlib import Path

    from django.conf import settings as django_settings
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "FERNET_KEYS": ",".join(keys),
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    env.pop("TM_TEST_DB", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=Path(django_settings.BASE_DIR), env=env,
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.django_db(transaction=True)
def test_rotate_credentials_command_with_keys_from_the_environment(world, settings):
    old, new = new_key(), new_key()
    settings.FERNET_KEYS = [old]
    cred = make_credential(world.tenant_a, "cli-box", deploy_as=world.superuser)

    missing = _manage("rotate_credentials", keys=[new])  # old key already removed: refused
    assert missing.returncode == 1
    assert "'cli-box' in tenant 'Alpha Corp'" in missing.stderr and "Traceback" not in missing.stderr

    done = _manage("rotate_credentials", keys=[new, old])
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 1 artifact(s) (2 encrypted value(s))" in done.stdout

    assert _manage("rotate_credentials", "--dry-run", keys=[new]).returncode == 0  # new alone works
    settings.FERNET_KEYS = [new]
    fresh = UserCredential.objects.get(pk=cred.pk)
    assert fresh.password == SECRET and fresh.deployed_password == SECRET
    assert fresh.status == CredentialStatus.DEPLOYED
