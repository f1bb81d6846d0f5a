"""Fixtures of the inbound tests: a tenant, deployed credentials, inbound connections on the
real Dovecot of `tests/mailservers.py`."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from connections.models import InboundConnection, Tenant, UserCredential
from connections.services import credentials as credential_service


def corpus_dir() -> Path | None:
    """The public corpus beside the checkout (`../shared/corpus/public`), or TENANTMAIL_CORPUS."""
    override = os.environ.get("TENANTMAIL_CORPUS")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "public"
    return path.resolve() if path.is_dir() else None


def corpus_files() -> list[Path]:
    root = corpus_dir()
    if root is None:
        where = os.environ.get("TENANTMAIL_CORPUS") or str(
            (Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "public").resolve()
        )
        if os.environ.get("TENANTMAIL_ALLOW_NO_CORPUS") == "1":
            pytest.skip(
                f"!!! THE PUBLIC MAIL CORPUS IS MISSING ({where}): the corpus tests did NOT run "
                "(TENANTMAIL_ALLOW_NO_CORPUS=1). !!!"
            )
        pytest.fail(
            f"The public mail corpus is missing at {where}. Put it there, point TENANTMAIL_CORPUS at it, "
            "or set TENANTMAIL_ALLOW_NO_CORPUS=1 to skip these tests knowingly."
        )
    manifest = root / "MANIFEST.tsv"
    if manifest.exists():
        names = [line.split("\t", 1)[0] for line in manifest.read_text().splitlines()[1:] if line.strip()]
        files = [root / n for n in names]
    else:
        files = [p for p in root.rglob("*") if p.is_file() and p.name not in ("SOURCES.md", "MANIFEST.tsv")]
    missing = [str(p) for p in files if not p.is_file()]
    assert not missing, f"corpus files listed but missing: {missing[:5]}"
    assert len(files) > 100, f"the corpus at {root} looks incomplete ({len(files)} files)"
    return sorted(files)


@pytest.fixture
def tenant(db) -> Tenant:
    slug = f"t-{uuid.uuid4().hex[:8]}"
    return Tenant.objects.create(name=f"Tenant {slug}", slug=slug)


@pytest.fixture
def make_credential(tenant):
    """make(username, password) -> the name of a deployed User Credentials artifact."""

    def make(username: str = "nobody@example.test", password: str = "secret-pw") -> str:
        name = f"cred-{uuid.uuid4().hex[:8]}"
        cred = UserCredential(tenant=tenant, name=name, username=username)
        credential_service.save_artifact(credential=cred, password=password)
        credential_service.deploy(credential_id=cred.pk, user=None)
        return name

    return make


@pytest.fixture
def make_inbound(tenant, mail_servers, make_credential):
    """make(address, password, protocol="imap", **fields) -> InboundConnection (deployed credential)."""

    def make(address: str, password: str, *, protocol: str = "imap", protection: str = "ssl_tls",
             authentication: str = "plain", **fields) -> InboundConnection:
        cred_name = make_credential(address, password)
        ms = mail_servers.mail_settings(protocol=protocol, protection=protection, authentication=authentication,
                                        username=address)
        values = dict(
            tenant=tenant, name=f"in-{uuid.uuid4().hex[:8]}", protocol=protocol, host=ms.host, port=ms.port,
            protection=protection, authentication=authentication, credential_name=cred_name,
            trusted_ca=ms.trusted_ca, timeout=10,
        )
        values.update(fields)
        return InboundConnection.objects.create(**values)

    return make
