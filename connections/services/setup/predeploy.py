"""Test a connection with the stored, not yet deployed values of its User Credentials
artifact (issue 20, item 9: "Test with these values"), so that a new password is tried
before Deploy puts it in use. The result says which values were used; it is only stored on
the connection when asked (the guided setup records it once it has deployed those values).
"""
from __future__ import annotations

import time

from django.utils import timezone

from ...errors import TenantMailError
from ...models import UserCredential
from ..access.lookup import Connection
from .connection_settings import connection_kind, connection_protocol, mail_settings_for
from .warnings import security_warnings
from .connectivity import ConnectivityResult, PreparedTest, execute_test, record_test
from .credentials import DeployedCredential

ENTERED = "the stored, not yet deployed values"


def prepare_with_entered_values(*, connection: Connection, credential: UserCredential) -> PreparedTest:
    """Phase 1 (database): the connection's settings with the artifact's entered values."""
    entered = DeployedCredential(name=credential.name, username=credential.username,
                                 password=credential.password or "", version=credential.version)
    prepared = PreparedTest(
        connection=connection, kind=connection_kind(connection), protocol=connection_protocol(connection),
        tested_at=timezone.now(), started=time.perf_counter(), settings=None, warnings=security_warnings(connection=connection),
        credential_step={"name": "credential", "ok": True, "duration_ms": 0.0, "message": "", "hint": "",
                         "skipped": False, "detail": {"name": credential.name, "username": credential.username,
                                                      "values": ENTERED}},
    )
    try:
        if not entered.password:
            raise TenantMailError(f"'{credential.name}' has no stored password.",
                                  hint="enter the password on the artifact's page")
        prepared.settings = mail_settings_for(connection, credential=entered)
        prepared.password = entered.password
    except TenantMailError as exc:
        prepared.credential_step.update(ok=False, message=exc.message, hint=exc.hint)
    return prepared


def finish(*, prepared: PreparedTest, probe: dict | None, store: bool) -> ConnectivityResult:
    """Phase 3: the report, saying which values were used."""
    result = record_test(prepared=prepared, probe=probe, store=store)
    result.summary = f"With {ENTERED} of '{prepared.credential_step['detail'].get('name', '')}': {result.summary}"
    result.report["values"] = ENTERED
    return result


def test_with_entered_values(*, connection: Connection, credential: UserCredential) -> ConnectivityResult:
    """Run the connectivity test with the artifact's entered values; nothing is stored."""
    prepared = prepare_with_entered_values(connection=connection, credential=credential)
    return finish(prepared=prepared, probe=execute_test(prepared=prepared), store=False)
