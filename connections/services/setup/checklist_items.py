"""The items of the setup checklist, one function each: credential, transport security, last
connectivity test, schedule, post-processing, push, Default From, enabled, run-time state.

Each returns `Item`s: a state (ok / warn / fail), what is the case, and a link to where it
is fixed (`checklist_links`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ...models import (
    Authentication,
    InboundConnection,
    OutboundConnection,
    PostProcessing,
    Protection,
    Protocol,
    Selection,
    UserCredential,
)
from ..access.lookup import Connection
from ..common import dates
from .checklist_links import add_credential_url, connectivity_panel_url, deploy_url, on_page

OK, WARN, FAIL = "ok", "warn", "fail"
SYMBOLS = {OK: "✓", WARN: "⚠", FAIL: "✗"}


@dataclass(frozen=True)
class Item:
    key: str
    state: str  # "ok" | "warn" | "fail"
    label: str
    detail: str = ""
    link: str = ""
    link_label: str = ""

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.state]

    @property
    def state_text(self) -> str:
        """What is the case (the detail), not the label, which names the goal: a failing
        "Last connectivity test passed" reads "Failed 2026-11-21 09:37: …"."""
        return self.detail or self.label

    def as_dict(self) -> dict[str, str]:
        return {
            "key": self.key, "state": self.state, "label": self.label, "detail": self.detail,
            "link": self.link, "link_label": self.link_label,
        }


def runtime_items(c: Connection) -> list[Item]:
    """Run-time state (issue 16): a failing, backing-off or overdue connection is never Ready."""
    from ..monitoring import runtime

    state = runtime.state_of(c)
    if not state.bad:
        return []
    since = f" (since {state.since:%Y-%m-%d %H:%M} UTC)" if state.since else ""
    inbound = isinstance(c, InboundConnection)
    return [Item("runtime", FAIL if state.state == runtime.FAILING else WARN,
                 f"{'Polling' if inbound else 'Sending'}: {state.label}", f"{state.detail}{since}",
                 link=on_page(c, ""), link_label="Poll history" if inbound else "Connection")]


def credential_items(c: Connection, creds: dict[tuple[int, str], UserCredential]) -> list[Item]:
    name = (c.credential_name or "").strip()
    if not name:
        return _no_credential_name_items(c)
    cred = creds.get((c.tenant_id, name))
    if cred is None:
        return _missing_credential_items(c, name, creds)
    from ..oauth2 import checklist as oauth2_checklist

    items: list[Item] = []
    change_url = oauth2_checklist.change_url(cred)
    items.append(Item("credential_exists", OK, "User Credentials artifact exists in this tenant",
                      f"'{cred.name}' (user {cred.username}).", change_url, "Open"))
    problem = cred.decryption_problem()
    if problem:
        items.append(Item("credential_deployed", FAIL, "User Credentials artifact is deployed", problem,
                          change_url, "Open the artifact"))
    elif cred.version == 0:
        items.append(Item("credential_deployed", FAIL, "User Credentials artifact is deployed",
                          f"'{cred.name}' has never been deployed: the connection cannot log in.",
                          deploy_url(cred, c), "Deploy"))
    elif cred.has_undeployed_changes:
        # The connection keeps working with the deployed version: attention, not Blocked.
        items.append(Item("credential_deployed", WARN, "User Credentials artifact is deployed",
                          f"'{cred.name}' has changes that are not deployed; the connection still uses "
                          f"version {cred.version}. Deploy to use them.", deploy_url(cred, c), "Deploy"))
    else:
        when = f" on {dates.short(cred.deployed_at)}" if cred.deployed_at else ""
        items.append(Item("credential_deployed", OK, "User Credentials artifact is deployed",
                          f"Version {cred.version}{when}, no undeployed changes.", change_url, "Open"))
    items.append(Item("credential_name", OK, "Credential Name refers to the artifact",
                      f"Credential Name is '{name}'."))
    items.extend(oauth2_checklist.items(c, cred))
    return items


def _no_credential_name_items(c: Connection) -> list[Item]:
    return [
        Item("credential_exists", FAIL, "User Credentials artifact exists in this tenant",
             "The connection names no artifact yet; create one (or pick an existing one) and "
             "enter its name as Credential Name.", add_credential_url(c, ""), "Create User Credentials"),
        Item("credential_deployed", FAIL, "User Credentials artifact is deployed",
             "Nothing to deploy until an artifact is named."),
        Item("credential_name", FAIL, "Credential Name refers to the artifact",
             "Credential Name is empty.", on_page(c, "#id_credential_name"), "Enter the Credential Name"),
    ]


def _missing_credential_items(c: Connection, name: str, creds: dict[tuple[int, str], UserCredential]) -> list[Item]:
    items: list[Item] = []
    similar = [n for (tid, n) in creds if tid == c.tenant_id and n.lower() == name.lower()]
    detail = f"No User Credentials artifact named '{name}' exists in this tenant."
    if similar:
        detail += f" Names are case-sensitive: did you mean '{similar[0]}'?"
    items.append(Item("credential_exists", FAIL, "User Credentials artifact exists in this tenant",
                      detail, add_credential_url(c, name), f"Create '{name}'"))
    items.append(Item("credential_deployed", FAIL, "User Credentials artifact is deployed",
                      "Create the artifact first, then deploy it."))
    items.append(Item("credential_name", FAIL, "Credential Name refers to the artifact",
                      f"Credential Name '{name}' refers to no artifact.", on_page(c, "#id_credential_name"),
                      "Correct the Credential Name"))
    return items


def transport_item(c: Connection) -> Item:
    prot = Protection(c.protection)
    auth = c.authentication
    fails: list[str] = []
    warns: list[str] = []
    secret = "password" if auth != Authentication.OAUTH2 else "access token"
    if auth in (Authentication.PLAIN, Authentication.OAUTH2) and prot == Protection.OFF:
        what = "Plain user/password" if auth == Authentication.PLAIN else "OAuth2"
        if c.allow_plain_without_tls:
            warns.append(
                f"{what} without TLS: the {secret} can be read on the network "
                "(allowed by 'allow plain login without TLS')."
            )
        else:
            fails.append(
                f"{what} needs STARTTLS mandatory or SSL/TLS, but protection is Off: "
                f"the connection refuses to send the {secret}."
            )
    elif c.allow_plain_without_tls:
        warns.append("'Allow plain login without TLS' is on: turn it off unless you need it.")
    if prot == Protection.STARTTLS_OPTIONAL:
        if auth == Authentication.PLAIN and not c.allow_plain_without_tls:
            warns.append(
                "STARTTLS optional with plain user/password: if the server offers no STARTTLS, the "
                "login is refused; choose STARTTLS mandatory."
            )
        else:
            warns.append("STARTTLS optional: if the server offers no STARTTLS, mail travels unencrypted.")
    elif prot == Protection.OFF:
        warns.append("No TLS: mail travels unencrypted.")
    if prot != Protection.OFF and not c.verify_certificate:
        warns.append("Certificate validation is off: an impostor server would not be noticed.")
    if fails:
        return Item("transport", FAIL, "Transport security", " ".join(fails + warns),
                    on_page(c, "#id_protection"), "Change protection")
    if warns:
        return Item("transport", WARN, "Transport security", " ".join(warns), on_page(c, "#id_protection"), "Review")
    return Item("transport", OK, "Transport security",
                f"{prot.label} with certificate validation.")


# The settings a connectivity test depends on, as recorded in its report ("connection").
_TESTED_SETTINGS = ("host", "protection", "authentication", "credential_name", "verify_certificate",
                    "allow_plain_without_tls")


def _changed_since_test(c: Connection) -> list[str]:
    """Settings that differ from those the last test ran with (labels, for the operator)."""
    report = c.last_test_report if isinstance(c.last_test_report, dict) else {}
    tested = report.get("connection")
    if not isinstance(tested, dict):
        # No record of what was tested: any save after the test counts as a change.
        # (A second's slack: a row saved together with its test result is not "changed since".)
        changed = (c.updated_at is not None and c.last_test_at is not None
                   and c.updated_at > c.last_test_at + timedelta(seconds=1))
        return ["the connection"] if changed else []
    changed = [name for name in _TESTED_SETTINGS
               if name in tested and str(getattr(c, name, "") or "") != str(tested.get(name) or "")]
    if c.port and tested.get("port") and int(c.port) != int(tested["port"]):
        changed.append("port")
    protocol = str(getattr(c, "protocol", "") or "")
    if isinstance(c, InboundConnection) and tested.get("protocol") and protocol != tested["protocol"]:
        changed.append("protocol")
    return [c._meta.get_field(n).verbose_name if n != "the connection" else n for n in changed]


def connectivity_item(c: Connection, creds: dict[tuple[int, str], UserCredential]) -> Item:
    link = connectivity_panel_url(c)
    label = "Last connectivity test passed"
    if c.last_test_at is None:
        return Item("connectivity", WARN, label, "Not tested yet.", link, "Test connection")
    summary = (c.last_test_summary or "").strip().rstrip(".")
    detail = dates.short(c.last_test_at) + (f": {summary}" if summary else "")
    # A result says little once the password or the settings it was made with have changed
    # (a redeploy may have brought a wrong password, or fixed the cause of a failure).
    reasons = []
    cred = creds.get((c.tenant_id, (c.credential_name or "").strip()))
    if (c.authentication != Authentication.NONE and cred is not None and cred.deployed_at
            and cred.deployed_at > c.last_test_at):
        reasons.append(f"'{cred.name}' was deployed again on {dates.short(cred.deployed_at)}")
    changed = _changed_since_test(c)
    if changed:
        reasons.append("changed since: " + ", ".join(changed))
    if not c.last_test_ok:
        if reasons:
            return Item("connectivity", WARN, label,
                        f"The last test failed, but the settings or the credential changed since; run the "
                        f"test again ({'; '.join(reasons)}). Failed {detail}.", link, "Test again")
        return Item("connectivity", FAIL, label, f"Failed {detail}.", link, "Test connection")
    if reasons:
        return Item("connectivity", WARN, label,
                    f"Test is older than the last deploy/change; run it again ({'; '.join(reasons)}). "
                    f"Passed {detail}.", link, "Test again")
    return Item("connectivity", OK, label, f"Passed {detail}.", link, "Test again")


def schedule_item(c: InboundConnection) -> Item:
    from ..inbound import schedule as schedule_service

    label = "Enabled with a schedule"
    sched = schedule_service.Schedule.of(c)
    try:
        schedule_service.validate(schedule=sched)
    except Exception as exc:  # the schedule service's ValidationError
        return Item("schedule", FAIL, label, f"The schedule cannot run: {getattr(exc, 'message', exc)}",
                    on_page(c, "#id_schedule_kind"), "Fix the schedule")
    text = schedule_service.describe(schedule=sched)
    if not c.enabled:
        return Item("schedule", WARN, label, f"Disabled: no scheduled polls (schedule: {text}).",
                    on_page(c, "#id_enabled"), "Enable")
    nxt = f"; next poll {dates.short(c.next_poll_at)}" if c.next_poll_at else ""
    return Item("schedule", OK, label, f"Polls {text}{nxt}.")


def push_item(c: InboundConnection) -> Item:
    from ..push.state import describe

    level, text = describe(c)
    return Item("push", OK if level == "ok" else WARN, "Push (IMAP IDLE)", text)


def post_processing_item(c: InboundConnection) -> Item:
    label = "Post-processing"
    pp = c.post_processing
    shown = PostProcessing(pp).label if pp in PostProcessing.values else pp
    if c.protocol == Protocol.POP3:
        if pp not in (PostProcessing.DELETE, PostProcessing.KEEP):
            return Item("post_processing", FAIL, label,
                        f"POP3 has no folders or read flags: '{shown}' cannot be done; use Delete or Keep.",
                        on_page(c, "#id_post_processing"), "Change")
        if pp == PostProcessing.KEEP:
            return Item("post_processing", WARN, label,
                        "Keep: mails stay on the server and the mailbox grows; already stored mails are "
                        "recognised and not stored again.", on_page(c, "#id_post_processing"), "Review")
        return Item("post_processing", OK, label, "Delete: mails are deleted on the server once stored.")
    if pp in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ) and not c.archive_folder.strip():
        return Item("post_processing", FAIL, label, f"'{shown}' needs an archive folder.",
                    on_page(c, "#id_archive_folder"), "Set the archive folder")
    if pp in (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ) and \
            c.archive_folder.strip() == (c.folder or "").strip():
        return Item("post_processing", FAIL, label, "The archive folder must differ from the polled folder.",
                    on_page(c, "#id_archive_folder"), "Change the archive folder")
    if c.selection == Selection.ALL and pp in (PostProcessing.MARK_READ, PostProcessing.KEEP):
        return Item("post_processing", WARN, label,
                    f"'{shown}' with selection All re-processes mail: every poll looks at every mail in "
                    f"'{c.folder}' again (stored mails are skipped, but the work grows with the folder). "
                    "Use selection Only unread, or move/delete after storing.",
                    on_page(c, "#id_selection"), "Review")
    if c.selection == Selection.UNREAD and pp == PostProcessing.KEEP:
        return Item("post_processing", WARN, label,
                    "Keep with selection Only unread: mails stay unread and every poll looks at them again.",
                    on_page(c, "#id_post_processing"), "Review")
    detail = {
        PostProcessing.MARK_READ: "Mark as read: stored mails are flagged as read on the server.",
        PostProcessing.DELETE: "Delete: mails are deleted on the server once stored.",
        PostProcessing.MOVE: f"Move to '{c.archive_folder}' once stored.",
        PostProcessing.MOVE_AND_MARK_READ: f"Mark as read and move to '{c.archive_folder}' once stored.",
        PostProcessing.KEEP: "Keep unchanged.",
    }.get(pp, shown)
    return Item("post_processing", OK, label, detail)


def default_from_item(c: OutboundConnection) -> Item:
    label = "Default From"
    if not (c.default_from or "").strip():
        return Item("default_from", FAIL, label, "No default From: messages that name no From cannot be sent.",
                    on_page(c, "#id_default_from"), "Set the default From")
    return Item("default_from", OK, label, c.default_from)


def outbound_enabled_item(c: OutboundConnection) -> Item:
    label = "Enabled"
    if not c.enabled:
        return Item("enabled", WARN, label, "Disabled: queued messages wait and are not sent.",
                    on_page(c, "#id_enabled"), "Enable")
    return Item("enabled", OK, label, "Queued messages are sent.")
