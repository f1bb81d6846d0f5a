"""The connectivity test: every step of talking to a mail server, timed, with hints.

DNS -> TCP -> TLS -> greeting -> capabilities -> authentication -> per protocol:
IMAP folders / configured folder / its counts; POP3 STAT / UIDL; SMTP optional address check
(MAIL FROM + RCPT TO, then RSET: nothing is sent). No Django; the secret never appears in the
report (it is only handed to the client, and the report is scrubbed once more to be sure).
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass

from .trace import StepRecord, Trace
from .errors import MailError
from .imap import IMAPClient
from .pop3 import POP3Client
from .settings import MailSettings
from .smtp import SMTPClient

__all__ = ["ProbeReport", "ProbeStep", "run_probe"]

CERT_EXPIRY_WARNING_DAYS = 14

# Every failure carries a hint; these cover the rare errors that bring none of their own.
_DEFAULT_HINTS = {
    "proxy": "check the proxy's host, port and credential, and that it may reach the mail server",
    "dns": "check the host name and this machine's DNS resolver",
    "tcp": "check host, port and firewall",
    "tls": "check the server's TLS configuration, the protection and the port",
    "greeting": "check that the port belongs to this protocol and the server accepts this client",
    "capabilities": "the server answered its capabilities unexpectedly: check the port and protocol",
    "auth": "check the user name, the credential's deployed password and the authentication setting",
    "folders": "the server could not list folders for this user: check the account on the server",
    "folder": "check the connection's folder name against the server's folders",
    "status": "the server could not report the folder's counts: check the account on the server",
    "stat": "the server could not open the mailbox: check the account on the server",
    "uidl": "the server could not list unique ids: try again later",
    "addresses": "check the addresses and the sender",
}


@dataclass
class ProbeStep(StepRecord):
    """One step of the report: a trace step, JSON-ready."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ProbeReport:
    ok: bool
    steps: list[ProbeStep]
    summary: str
    protocol: str = ""
    host: str = ""
    port: int = 0
    started_at: str = ""
    duration_ms: float = 0.0

    @property
    def failed_step(self) -> ProbeStep | None:
        return next((s for s in self.steps if not s.ok), None)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "summary": self.summary, "protocol": self.protocol, "host": self.host,
            "port": self.port, "started_at": self.started_at, "duration_ms": self.duration_ms,
            "steps": [s.to_dict() for s in self.steps],
        }


def run_probe(
    settings: MailSettings,
    password: str | None,
    *,
    check_addresses: list[str] | None = None,
    sender: str | None = None,
) -> ProbeReport:
    """Run the connectivity test. Never raises for server or network problems: they become a
    failed step with a message and a hint."""
    started_at = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    trace = Trace()
    failure: BaseException | None = None
    client_class = {"smtp": SMTPClient, "imap": IMAPClient, "pop3": POP3Client}[settings.protocol]
    if settings.authentication != "none" and password is None:
        failure = MailError(
            f"no deployed password for user {settings.username}"
            + (f" (credential '{settings.credential_name}')" if settings.credential_name else ""),
            hint="create the User Credentials artifact, deploy it, and reference it by its name",
            step="auth",
        )
    else:
        try:
            with client_class(settings, password, trace=trace) as client:
                if settings.protocol == "imap":
                    _imap_steps(client, settings, trace)
                elif settings.protocol == "pop3":
                    _pop3_steps(client, trace)
                elif check_addresses:
                    _smtp_steps(client, settings, trace, check_addresses, sender)
        except MailError as exc:
            failure = exc
        except Exception as exc:  # a bug or an odd server must still produce a report
            failure = MailError(f"unexpected error: {type(exc).__name__}: {exc}")
    steps = [_step(record) for record in trace.steps]
    if failure is not None and not any(not s.ok for s in steps):
        message = getattr(failure, "message", str(failure))
        steps.append(ProbeStep(getattr(failure, "step", "command"), False, 0.0, {}, message, getattr(failure, "hint", "")))
    _add_features(steps, settings)
    _add_hints(steps, settings)
    ok = failure is None and all(s.ok for s in steps)
    report = ProbeReport(
        ok=ok, steps=steps, summary=_summary(ok, steps, settings), protocol=settings.protocol,
        host=settings.host, port=settings.effective_port, started_at=started_at.isoformat(),
        duration_ms=round((time.perf_counter() - started) * 1000.0, 2),
    )
    if password:
        _scrub(report, password)
    return report


def _step(record: StepRecord) -> ProbeStep:
    return ProbeStep(**vars(record))


def _imap_steps(client: IMAPClient, settings: MailSettings, trace: Trace) -> None:
    with trace.step("folders") as detail:
        folders = client.list_folder_details()
        detail["folders"] = [f.name for f in folders]
        detail["separator"] = client.separator
        detail["count"] = len(folders)
    wanted = settings.folder or "INBOX"
    names = [f.name for f in folders]
    with trace.step("folder") as detail:
        detail["folder"] = wanted
        exists = wanted in names or (wanted.upper() == "INBOX" and any(n.upper() == "INBOX" for n in names))
        detail["exists"] = exists
        if not exists:
            close = [n for n in names if n.lower() == wanted.lower()]
            raise MailError(
                f"folder {wanted!r} does not exist on the server",
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"the server's folders: {', '.join(names[:30]) or 'none'}",
                step="command", transient=False,
            )
    with trace.step("status") as detail:
        status = client.status(wanted)
        detail["folder"] = wanted
        detail["messages"] = status.get("messages")
        detail["unseen"] = status.get("unseen")
        detail["uidvalidity"] = status.get("uidvalidity")
        detail["uidnext"] = status.get("uidnext")


def _pop3_steps(client: POP3Client, trace: Trace) -> None:
    with trace.step("stat") as detail:
        count, size = client.stat()
        detail["messages"] = count
        detail["size"] = size
    with trace.step("uidl") as detail:
        try:
            ids = client.uidl()
            detail["supported"] = True
            detail["count"] = len(ids)
        except MailError as exc:
            if exc.step != "command" or getattr(exc, "transient", False):
                raise
            detail["supported"] = False
            detail["_skipped"] = (
                "the server has no UIDL: mails cannot be remembered by unique id, so keep-on-server "
                "polling is not possible; use post-processing delete"
            )


def _smtp_steps(client: SMTPClient, settings: MailSettings, trace: Trace, recipients: list[str], sender: str | None) -> None:
    if sender is None:
        sender = settings.username if "@" in settings.username else ""
    with trace.step("addresses") as detail:
        results = client.check_addresses(sender=sender, recipients=list(recipients))
        detail["sender"] = sender
        detail["results"] = {r: {"code": c, "reply": t, "accepted": c in (250, 251)} for r, (c, t) in results.items()}
        refused = {r: (c, t) for r, (c, t) in results.items() if c not in (250, 251)}
        if refused:
            raise MailError(
                "refused: " + "; ".join(f"{r} ({c} {t})" for r, (c, t) in refused.items()),
                hint="check the addresses; a 'relay access denied' reply means this login may not send to that domain",
                step="command", transient=any(400 <= c < 500 for c, _ in refused.values()),
            )


def _add_features(steps: list[ProbeStep], settings: MailSettings) -> None:
    """One flat view of what the server offers, for the report: STARTTLS, AUTH mechanisms,
    SIZE, IDLE, MOVE, UIDPLUS, PIPELINING (after login where the server tells more then)."""
    by_name = {s.name: s for s in steps}
    caps_step = by_name.get("capabilities")
    if caps_step is None:
        return
    detail = caps_step.detail
    auth = by_name.get("auth")
    if settings.protocol == "smtp":
        ext = {k.lower(): v for k, v in (detail.get("extensions") or {}).items()}
        before = {k.lower() for k in (detail.get("extensions_before_tls") or {})}
        size = ext.get("size", "")
        detail["features"] = {
            "starttls": "starttls" in ext or "starttls" in before,
            "auth": ext.get("auth", "").upper().split(),
            "size": int(size) if size.isdigit() else None,
            "pipelining": "pipelining" in ext,
            "smtputf8": "smtputf8" in ext,
            "8bitmime": "8bitmime" in ext,
        }
    elif settings.protocol == "imap":
        caps = set(detail.get("capabilities") or [])
        if auth is not None:
            caps |= set(auth.detail.get("capabilities_after_login") or [])
        before = set(detail.get("capabilities_before_tls") or [])
        appendlimit = next((c.split("=", 1)[1] for c in caps if c.startswith("APPENDLIMIT=")), "")
        # Servers often announce extensions only after login: without a login, "not seen" is
        # not "not offered" (None: unknown).
        logged_in = auth is not None and auth.ok

        def offered(name: str) -> bool | None:
            return True if name in caps else (False if logged_in else None)

        detail["features"] = {
            "starttls": "STARTTLS" in caps or "STARTTLS" in before,
            "auth": sorted({c[5:] for c in caps | before if c.startswith("AUTH=")}),
            "size": int(appendlimit) if appendlimit.isdigit() else None,
            "idle": offered("IDLE"),
            "move": offered("MOVE"),
            "uidplus": offered("UIDPLUS"),
            "literal+": "LITERAL+" in caps,
        }
    else:
        caps = set(detail.get("capabilities") or [])
        before = set(detail.get("capabilities_before_tls") or [])
        greeting = by_name.get("greeting")
        detail["features"] = {
            "starttls": "STLS" in caps or "STLS" in before,
            "auth": list(detail.get("sasl") or []),
            "user": "USER" in caps,
            "apop": bool(greeting and greeting.detail.get("apop")),
            "uidl": "UIDL" in caps,
            "top": "TOP" in caps,
            "pipelining": "PIPELINING" in caps,
        }


def _add_hints(steps: list[ProbeStep], settings: MailSettings) -> None:
    for step in steps:
        if not step.ok and not step.hint:
            step.hint = _DEFAULT_HINTS.get(step.name, "the server's reply above says why; try again later if it is temporary")
    by_name = {s.name: s for s in steps}
    tls = by_name.get("tls")
    caps = by_name.get("capabilities")
    offered = set()
    if caps:
        offered = {str(c).upper() for c in (caps.detail.get("capabilities") or caps.detail.get("extensions") or [])}
    if tls and tls.skipped and not tls.hint:
        if offered & {"STARTTLS", "STLS"}:
            tls.hint = "the server offers STARTTLS: set protection to STARTTLS mandatory"
        else:
            tls.hint = "the connection is not encrypted: use SSL/TLS or STARTTLS where the server supports it"
    if tls and tls.ok and not tls.skipped:
        if not settings.verify_certificate:
            tls.message = tls.message or "certificate verification is OFF: the server's identity was not checked"
            tls.hint = tls.hint or "turn certificate validation on, trusting the server's CA if it is private"
        days = tls.detail.get("days_left")
        if isinstance(days, int) and days < CERT_EXPIRY_WARNING_DAYS:
            tls.message = tls.message or f"the server's certificate expires in {days} days"
            tls.hint = tls.hint or "ask the server's administrator to renew the certificate"


def _summary(ok: bool, steps: list[ProbeStep], settings: MailSettings) -> str:
    target = f"{settings.protocol.upper()} {settings.host}:{settings.effective_port}"
    total = round(sum(s.duration_ms for s in steps), 1)
    if ok:
        facts = []
        tls = next((s for s in steps if s.name == "tls" and not s.skipped), None)
        facts.append(tls.detail.get("version", "TLS") if tls else "not encrypted")
        auth = next((s for s in steps if s.name == "auth"), None)
        if auth:
            facts.append(f"authenticated as {settings.username} ({auth.detail.get('mechanism', '')})")
        status = next((s for s in steps if s.name in ("status", "stat")), None)
        if status:
            count = status.detail.get("messages")
            facts.append(f"{count} message{'' if count == 1 else 's'}")
        return f"{target}: all {len(steps)} steps passed in {total} ms ({', '.join(facts)})"
    failed = next((s for s in steps if not s.ok), None)
    if failed is None:
        return f"{target}: failed"
    return f"{target}: failed at {failed.name}: {failed.message}"


def _scrub(report: ProbeReport, secret: str) -> None:
    """Belt and braces: the secret must never appear in the report."""

    def clean(value):
        if isinstance(value, str):
            return value.replace(secret, "***") if secret in value else value
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(v) for v in value)
        return value

    report.summary = clean(report.summary)
    for step in report.steps:
        step.message = clean(step.message)
        step.hint = clean(step.hint)
        step.detail = clean(step.detail)
