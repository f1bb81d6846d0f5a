"""The connectivity test of a connection: resolve its credential, run the probe, record the result.

    result = run_connectivity_test(kind="inbound", connection_id=7)
    result.ok, result.summary, result.report   # report: JSON-ready dict, never the secret

Steps reported: credential (resolving the deployed User Credentials artifact) and then the
probe's own: dns, tcp, tls, greeting, capabilities, auth, and per protocol folders/folder/status
(IMAP), stat/uidl (POP3) or addresses (SMTP, only when addresses are given). The last result is
stored on the connection (last_test_at/ok/summary/report) in a short write after the network
I/O; no transaction is open while the server is talked to.

Three phases, usable one by one: prepare_test (database: credential, settings), execute_test
(network only), record_test (database: report, store). probe_connection runs all three;
BackgroundTest runs the network phase in a thread for callers that may not wait for the whole
timeout (the admin), and records the result itself when the caller stopped waiting.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from django.db import connections as db_connections
from django.utils import timezone

from ...errors import ConfigurationError, TenantMailError
from ...mail.probe import run_probe
from ...mail.settings import PROTECTIONS, default_port
from ..access.lookup import MODELS, Connection, Kind
from .connection_settings import (
    connection_kind,
    connection_protocol,
    mail_settings_for,
    open_credential,
)
from .warnings import security_warnings

log = logging.getLogger(__name__)

MAX_CHECK_ADDRESSES = 50


@dataclass
class ConnectivityResult:
    kind: str
    connection_id: int
    ok: bool
    summary: str
    tested_at: dt.datetime
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.report.get("steps", [])

    @property
    def failed_step(self) -> dict[str, Any] | None:
        return next((s for s in self.steps if not s["ok"]), None)


def _connection(*, kind: Kind, connection_id: int) -> Connection:
    if kind not in MODELS:
        raise ValueError(f"unknown connection kind {kind!r}")
    return MODELS[kind].objects.select_related("tenant").get(pk=connection_id)


# --------------------------------------------------------------------------- the test
def run_connectivity_test(
    *,
    kind: Kind,
    connection_id: int,
    check_addresses: list[str] | None = None,
    sender: str | None = None,
    store: bool = True,
) -> ConnectivityResult:
    """Test the connection now. Never raises for server, network or credential trouble:
    those are a failed step with a message and a hint."""
    connection = _connection(kind=kind, connection_id=connection_id)
    return probe_connection(connection=connection, check_addresses=check_addresses, sender=sender, store=store)


def probe_connection(
    *,
    connection: Connection,
    check_addresses: list[str] | None = None,
    sender: str | None = None,
    store: bool = True,
) -> ConnectivityResult:
    """As run_connectivity_test, for a connection already loaded."""
    prepared = prepare_test(connection=connection, check_addresses=check_addresses, sender=sender)
    return record_test(prepared=prepared, probe=execute_test(prepared=prepared), store=store)


@dataclass
class PreparedTest:
    """Everything the network part needs, read from the database beforehand (so no query and no
    transaction runs while the server is talked to). Holds the secret: never log or show it."""

    connection: Connection
    kind: str
    protocol: str
    tested_at: dt.datetime
    started: float
    credential_step: dict[str, Any]
    settings: Any  # MailSettings | None (None: the credential step failed, nothing to probe)
    password: str | None = field(default=None, repr=False)
    addresses: list[str] = field(default_factory=list)
    sender: str | None = None
    warnings: list[str] = field(default_factory=list)
    token_step: dict[str, Any] | None = None  # OAuth2: getting the access token


def prepare_test(
    *, connection: Connection, check_addresses: list[str] | None = None, sender: str | None = None
) -> PreparedTest:
    """Phase 1 (database): resolve the credential and build the settings.

    Raises ConfigurationError for options that make no sense (addresses on IMAP/POP3)."""
    kind = connection_kind(connection)
    protocol = connection_protocol(connection)
    addresses = [a.strip() for a in (check_addresses or []) if a and a.strip()]
    if addresses and protocol != "smtp":
        raise ConfigurationError(
            "Checking mail addresses is an SMTP test.",
            hint="use --check-address only with outbound (SMTP) connections",
        )
    if len(addresses) > MAX_CHECK_ADDRESSES:
        raise ConfigurationError(f"At most {MAX_CHECK_ADDRESSES} addresses can be checked at once.")
    if addresses and not sender and kind == "outbound":
        sender = parseaddr(getattr(connection, "default_from", "") or "")[1] or None

    prepared = PreparedTest(
        connection=connection, kind=kind, protocol=protocol, tested_at=timezone.now(),
        started=time.perf_counter(), settings=None, addresses=addresses, sender=sender,
        warnings=security_warnings(connection=connection),
        credential_step={"name": "credential", "ok": True, "duration_ms": 0.0, "detail": {}, "message": "",
                         "hint": "", "skipped": False},
    )
    step = prepared.credential_step
    from ..oauth2.connect import token_step
    from ..oauth2.errors import OAuth2Error

    try:
        connection.tenant  # noqa: B018 - loaded now, not later in another thread
        credential = open_credential(connection)
        if credential is None:
            step.update(skipped=True, message="authentication None: no credential is used")
        else:
            prepared.password = credential.password
            step["detail"] = {"name": credential.name, "username": credential.username, "version": credential.version}
            prepared.token_step = token_step(credential=credential)
        prepared.settings = mail_settings_for(connection, credential=credential)
    except OAuth2Error as exc:
        prepared.token_step = token_step(error=exc, started=prepared.started)
    except TenantMailError as exc:
        step.update(ok=False, message=exc.message, hint=exc.hint)
    step["duration_ms"] = round((time.perf_counter() - prepared.started) * 1000.0, 2)
    return prepared


def execute_test(*, prepared: PreparedTest) -> dict[str, Any] | None:
    """Phase 2 (network only, no database): run the probe. None when there was nothing to run."""
    if prepared.settings is None:
        return None
    probe = run_probe(prepared.settings, prepared.password, check_addresses=prepared.addresses or None,
                      sender=prepared.sender)
    return probe.to_dict()


def record_test(*, prepared: PreparedTest, probe: dict[str, Any] | None, store: bool = True) -> ConnectivityResult:
    """Phase 3 (database): build the report and store it on the connection (one short UPDATE)."""
    connection, credential_step = prepared.connection, prepared.credential_step
    steps = [credential_step, *([prepared.token_step] if prepared.token_step else []), *(probe["steps"] if probe else [])]
    ok = all(s["ok"] for s in steps)
    if not ok:
        from ..oauth2.connect import after_test

        after_test(connection, steps)  # OAuth2: a refused token is not reused
    port = _tested_port(prepared)
    target = f"{prepared.protocol.upper()} {connection.host}:{port}"
    if probe:
        # The probe counts its own steps; the credential step is one more.
        summary = probe["summary"].replace(
            f"all {len(probe['steps'])} steps", f"all {len(steps)} steps", 1)
    else:
        summary = f"{target}: failed at credential: {credential_step['message']}"
    report: dict[str, Any] = {
        "ok": ok,
        "summary": summary,
        "tested_at": prepared.tested_at.isoformat(),
        "duration_ms": round((time.perf_counter() - prepared.started) * 1000.0, 2),
        "connection": _tested_settings(prepared, port),
        "warnings": prepared.warnings,
        "steps": steps,
    }
    if prepared.addresses:
        report["check_addresses"] = prepared.addresses
        report["sender"] = prepared.sender or ""
    if prepared.password:
        report = _scrub(report, prepared.password)
        summary = report["summary"]
    tested_at = prepared.tested_at
    if store:
        type(connection).objects.filter(pk=connection.pk).update(
            last_test_at=tested_at, last_test_ok=ok, last_test_summary=summary[:2000], last_test_report=report,
        )
        connection.last_test_at, connection.last_test_ok = tested_at, ok
        connection.last_test_summary, connection.last_test_report = summary[:2000], report
    log.info("connectivity test of %s connection %r (tenant %s): %s — %s", prepared.kind, connection.name,
             connection.tenant.slug, "passed" if ok else "FAILED", summary)
    return ConnectivityResult(kind=prepared.kind, connection_id=connection.pk, ok=ok, summary=summary,
                              tested_at=tested_at, report=report)


def _tested_port(prepared: PreparedTest) -> int | None:
    """The port really used: the default of protocol and protection when the field is empty,
    also when the test stopped before the settings were built (a credential problem)."""
    connection = prepared.connection
    if prepared.settings is not None:
        return prepared.settings.effective_port
    return connection.port or (default_port(prepared.protocol, connection.protection)
                               if connection.protection in PROTECTIONS else None)


def _tested_settings(prepared: PreparedTest, port: int | None) -> dict[str, Any]:
    """The settings the test ran with, as the report records them (the checklist compares)."""
    connection = prepared.connection
    return {
        "kind": prepared.kind, "id": connection.pk, "name": connection.name,
        "tenant": connection.tenant.slug, "protocol": prepared.protocol, "host": connection.host,
        "port": port, "protection": connection.protection, "authentication": connection.authentication,
        "credential_name": connection.credential_name, "timeout": connection.timeout,
        "verify_certificate": connection.verify_certificate,
        "allow_plain_without_tls": connection.allow_plain_without_tls,
    }


class BackgroundTest:
    """A prepared test whose network part runs in its own thread, for callers that may not wait
    for the whole timeout (a web request must answer before the web server gives up on it).

        running = BackgroundTest(prepared=prepare_test(connection=connection))
        result = running.result(wait=20)   # None: still running; it records its result itself

    The database is used only by the caller's thread (prepare, and record when the result comes
    in time) or, when the caller stopped waiting, by the test's thread after the network part.
    """

    def __init__(self, *, prepared: PreparedTest, store: bool = True) -> None:
        self.prepared = prepared
        self.store = store
        self._lock = threading.Lock()
        self._done = False
        self._abandoned = False
        self._probe: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"connectivity-{prepared.kind}-{prepared.connection.pk}")
        self._thread.start()

    def _run(self) -> None:
        try:
            probe, error = execute_test(prepared=self.prepared), None
        except BaseException as exc:  # run_probe turns server trouble into steps: this is a bug
            probe, error = None, exc
        with self._lock:
            self._probe, self._error, self._done = probe, error, True
            record_here = self._abandoned
        if not record_here:
            return
        try:  # nobody waits any more: record the result from this thread
            if error is not None:
                log.error("connectivity test of %r crashed: %r", self.prepared.connection.name, error)
                return
            record_test(prepared=self.prepared, probe=probe, store=self.store)
        except Exception:
            log.exception("recording the connectivity test of %r failed", self.prepared.connection.name)
        finally:
            db_connections.close_all()  # this thread's own connections

    def result(self, *, wait: float) -> ConnectivityResult | None:
        """The result if the test finishes within `wait` seconds, else None (it goes on)."""
        self._thread.join(max(0.0, wait))
        with self._lock:
            if not self._done:
                self._abandoned = True
                return None
        if self._error is not None:
            raise self._error
        return record_test(prepared=self.prepared, probe=self._probe, store=self.store)


def _scrub(value: Any, secret: str) -> Any:
    """The secret must never be stored or shown, whatever a server echoed back."""
    if isinstance(value, str):
        return value.replace(secret, "***") if secret in value else value
    if isinstance(value, dict):
        return {_scrub(k, secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secret) for v in value]
    return value

