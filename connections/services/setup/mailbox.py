"""The guided "Add mailbox": propose server settings for an address, store the password as a
User Credentials artifact (not deployed), test the edited settings with it, then create the
connections and deploy the artifact in one go.

No transaction is open while a server is talked to: the tests run first, the writes after.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from ...errors import ValidationError
from ...models import InboundConnection, OutboundConnection, Tenant, UserCredential
from . import credentials as credential_service
from . import predeploy
from ..inbound import schedule
from .connectivity import ConnectivityResult, PreparedTest, execute_test
from . import discovery, providers
from .providers import Server


@dataclass
class Proposal:
    email: str
    inbound: Server | None
    outbound: Server | None
    source: str  # where the settings come from, for the operator
    note: str = ""


def split_address(email: str) -> tuple[str, str]:
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise ValidationError(f"'{email}' is not an e-mail address.", hint="e.g. orders@acme.example")
    return local, domain.lower()


def username_for(server: Server | None, email: str) -> str:
    if server is None:
        return email
    local, domain = split_address(email)
    return (server.username.replace("%EMAILADDRESS%", email).replace("%EMAILLOCALPART%", local)
            .replace("%EMAILDOMAIN%", domain)) or email


def _pick(servers: list[Server], protocols: tuple[str, ...]) -> Server | None:
    for protocol in protocols:
        for s in servers:
            if s.protocol == protocol:
                return s
    return None


def propose(*, email: str) -> Proposal:
    """Settings for the address: a provider preset, else autoconfig, autodiscover, SRV records;
    else a guess (imap./smtp. + the domain) that the test will confirm or not."""
    _, domain = split_address(email)
    preset = providers.for_domain(domain)
    if preset is not None:
        return Proposal(email, preset.inbound, preset.outbound, f"the preset for {preset.name}", preset.note)
    for lookup, label in ((discovery.autoconfig, "the autoconfig document at {}"),
                          (discovery.autodiscover, "the autodiscover document at {}")):
        found = lookup(email=email, domain=domain)
        if found:
            servers, where = found
            return Proposal(email, _pick(servers, ("imap", "pop3")), _pick(servers, ("smtp",)), label.format(where))
    found = discovery.srv(domain=domain)
    if found:
        servers, where = found
        return Proposal(email, _pick(servers, ("imap", "pop3")), _pick(servers, ("smtp",)), where)
    return Proposal(email, Server("imap", f"imap.{domain}", 993, "ssl_tls"),
                    Server("smtp", f"smtp.{domain}", 587, "starttls_mandatory"),
                    f"a guess from the domain {domain} (nothing was published for it): check the values")


def artifact_name(*, tenant: Tenant, email: str) -> str:
    """A free artifact name made from the address (e.g. orders-acme.example)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", email.replace("@", "-")).strip("-")[:140] or "mailbox"
    name, n = base, 2
    while UserCredential.objects.filter(tenant=tenant, name=name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def store_password(*, tenant: Tenant, name: str, username: str, password: str) -> UserCredential:
    """Step 1: the artifact with the entered values (deployed only when the connections are created)."""
    if not password:
        raise ValidationError("Enter the mailbox's password.")
    cred = UserCredential(tenant=tenant, name=name, username=username)
    return credential_service.save_artifact(credential=cred, password=password)


@dataclass
class Plan:
    """The edited values of step 2 (unsaved connections, the artifact they will name)."""

    credential: UserCredential
    inbound: InboundConnection | None
    outbound: OutboundConnection | None
    prepared: dict[str, tuple[PreparedTest, dict | None]] = field(default_factory=dict)

    @property
    def connections(self) -> list[tuple[str, Any]]:
        return [(k, c) for k, c in (("inbound", self.inbound), ("outbound", self.outbound)) if c is not None]


def test(*, plan: Plan) -> dict[str, ConnectivityResult]:
    """Step 3: each connection tested with the artifact's entered values (nothing stored)."""
    results = {}
    for kind, conn in plan.connections:
        prepared = predeploy.prepare_with_entered_values(connection=conn, credential=plan.credential)
        probe = execute_test(prepared=prepared)
        plan.prepared[kind] = (prepared, probe)
        results[kind] = predeploy.finish(prepared=prepared, probe=probe, store=False)
    return results


def create(*, plan: Plan, user: Any) -> UserCredential:
    """Step 4: save the connections and deploy the artifact in one go; then record the tests
    (made with exactly the values now deployed) on the new connections."""
    with transaction.atomic():
        for _, conn in plan.connections:
            conn.credential_name = plan.credential.name
            conn.full_clean()
            conn.save()
        credential = credential_service.deploy(credential_id=plan.credential.pk, user=user, source="guided setup")
        if plan.inbound is not None:
            schedule.reschedule(connection=plan.inbound)
    for kind, conn in plan.connections:
        if kind in plan.prepared:
            prepared, probe = plan.prepared[kind]
            prepared.connection = conn
            prepared.tested_at = timezone.now()  # the deployed values are the tested ones
            predeploy.finish(prepared=prepared, probe=probe, store=True)
    return credential
