"""The rules for what a server's reply makes of a message: sent (with each recipient's reply),
retried after a backoff, failed, uncertain, or released/held back to the queue without
counting an attempt. Each `record_*` hands its row to `write` (a writer.Writer while sending;
writer.record_outcome by default) and returns the MessageOutcome for the run's SendReport.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable, Sequence

from django.utils import timezone

from ...errors import TenantMailError
from ...models import OutboxStatus, SendProgress
from . import policy
from .claims import Claimed
from .writer import log_entry, record_outcome

Write = Callable[..., Any]


@dataclass
class MessageOutcome:
    message_id: int
    status: str  # sent | retry | failed | uncertain | held | released
    detail: str = ""
    recipients: dict[str, dict] = field(default_factory=dict)


@dataclass
class SendReport:
    connection_id: int
    sessions: int = 0
    outcomes: list[MessageOutcome] = field(default_factory=list)
    error: str = ""  # a connection-level problem (could not open a session)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def sent(self) -> int:
        return self.count("sent")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def __str__(self) -> str:
        parts = [f"{self.count(s)} {s}" for s in ("sent", "retry", "failed", "uncertain", "held", "released")
                 if self.count(s)]
        text = ", ".join(parts) or "nothing due"
        return f"{text} in {self.sessions} session(s)" + (f"; {self.error}" if self.error else "")


def _refused(text: Any, code: int) -> dict:
    return {"status": "refused", "code": code, "text": reply_text(text)}


def record_sent(item: Claimed, accepted: Sequence[str], refused: dict[str, tuple[int, str]],
                write: Write = record_outcome, *, replies: dict[str, tuple[int, str]] | None = None,
                final: tuple[int, str] = (0, ""), queue_id: str = "") -> MessageOutcome:
    """The server took the data: sent, with what it said to each recipient; recipients it
    refused temporarily get a follow-up message."""
    results: dict[str, dict] = {}
    replies = replies or {}
    for rcpt in item.envelope_to:
        if rcpt in refused:
            results[rcpt] = _refused(refused[rcpt][1], refused[rcpt][0])
        else:
            # What the server said: to RCPT TO, and its final reply to the data (queue id).
            results[rcpt] = accepted_result(replies.get(rcpt), final, queue_id)
    for rcpt, (code, text) in refused.items():  # in case the server names them differently
        results.setdefault(rcpt, _refused(text, code))
    summary = f"accepted for {len(accepted)} of {len(results)} recipients"
    if refused:
        summary += "; refused: " + "; ".join(f"{r}: {v['code']} {v['text']}" for r, v in results.items()
                                             if v["status"] == "refused")
    followup = None
    deferred = [r for r, v in results.items() if v["status"] == "refused" and 400 <= v["code"] < 500]
    if deferred and item.attempts + 1 < policy.max_attempts():
        delay = policy.backoff_seconds(item.attempts + 1)
        reason = "; ".join(f"{r}: {results[r]['code']} {results[r]['text']}" for r in deferred)
        followup = {"recipients": deferred, "delay": delay, "reason": reason}
        summary += f"; {len(deferred)} refused temporarily: tried again in a follow-up message"
    write(
        item, status=OutboxStatus.SENT, sent_at=timezone.now(), attempts=item.attempts + 1,
        recipient_results={**(item.previous_results or {}), **results},
        last_error="" if not refused else summary, next_attempt_at=None,
        delivery_log=item.delivery_log + [log_entry("sent" if not refused else "partial", summary, final[0] or None,
                                                    **({"queue_id": queue_id} if queue_id else {}))],
        followup=followup, progress=SendProgress.REPLIED,
    )
    return MessageOutcome(item.id, "sent", summary, results)


def accepted_result(rcpt_reply: tuple[int, str] | None, final: tuple[int, str], queue_id: str) -> dict:
    result: dict[str, Any] = {"status": "accepted"}
    if rcpt_reply:
        result["rcpt_code"], result["rcpt_text"] = rcpt_reply[0], reply_text(rcpt_reply[1])
    if final[0]:
        result["code"], result["text"] = final[0], reply_text(final[1])
    if queue_id:
        result["queue_id"] = queue_id
    return result


def record_failure(item: Claimed, exc: TenantMailError, *, transient: bool,
                   write: Write = record_outcome) -> MessageOutcome:
    """Not sent: retried after a backoff while attempts remain (transient), else failed."""
    if getattr(exc, "maybe_delivered", False):
        return record_uncertain(item, exc, write=write)
    code, detail, attempts = getattr(exc, "code", None), str(exc), item.attempts + 1
    refused = getattr(exc, "refused", None) or {}
    results = {r: _refused(t, c) for r, (c, t) in refused.items()}
    merged = {**(item.previous_results or {}), **results}
    if transient and attempts < policy.max_attempts():
        delay = policy.backoff_seconds(attempts)
        extra: dict[str, Any] = {}
        # Every recipient refused, some for good (5xx): the retry is only for the others.
        still = [r for r in item.envelope_to if r not in refused or 400 <= refused[r][0] < 500]
        if refused and still and len(still) < len(item.envelope_to):
            extra["envelope_to"] = still
        write(
            item, status=OutboxStatus.QUEUED, attempts=attempts, last_error=detail,
            next_attempt_at=timezone.now() + timedelta(seconds=delay), recipient_results=merged,
            progress=SendProgress.REPLIED,
            delivery_log=item.delivery_log + [log_entry("retry", detail, code, retry_in=int(delay))], **extra,
        )
        return MessageOutcome(item.id, "retry", detail, results)
    if transient:
        detail = f"gave up after {attempts} attempts; last error: {detail}"
    write(
        item, status=OutboxStatus.FAILED, attempts=attempts, last_error=detail, next_attempt_at=None,
        recipient_results=merged, progress=SendProgress.REPLIED,
        delivery_log=item.delivery_log + [log_entry("failed", detail, code)],
    )
    return MessageOutcome(item.id, "failed", detail, results)


def record_uncertain(item: Claimed, exc: TenantMailError, *, write: Write = record_outcome) -> MessageOutcome:
    """Lost after the data, before the reply: uncertain, or queued again if the connection says so."""
    detail = str(exc)
    if item.resend_uncertain:
        write(item, status=OutboxStatus.QUEUED, attempts=item.attempts + 1, last_error=detail,
              next_attempt_at=timezone.now() + timedelta(seconds=policy.retry_base()),
              progress=SendProgress.REPLIED,
              delivery_log=item.delivery_log + [log_entry("uncertain", detail + "; sent again (the connection "
                                                                                "resends uncertain messages)")])
        return MessageOutcome(item.id, "retry", detail)
    write(item, status=OutboxStatus.UNCERTAIN, attempts=item.attempts + 1, last_error=detail,
          next_attempt_at=None, progress=SendProgress.REPLIED,
          delivery_log=item.delivery_log + [log_entry("uncertain", detail)])
    return MessageOutcome(item.id, "uncertain", detail)


def release(items: Iterable[Claimed], *, reason: str, delay: float, outcome: str,
            write: Write = record_outcome) -> list[MessageOutcome]:
    """Back to queued without counting an attempt (they were not tried, or the fault is not theirs)."""
    at = timezone.now() + timedelta(seconds=delay)
    outcomes = []
    for item in items:
        write(
            item, status=OutboxStatus.QUEUED, next_attempt_at=at, last_error=reason,
            delivery_log=item.delivery_log + [log_entry(outcome, reason)] if outcome == "held" else item.delivery_log,
        )
        outcomes.append(MessageOutcome(item.id, outcome, reason))
    return outcomes


def reply_text(text: Any) -> str:
    """A server's reply text as stored: decoded, on one line, at most 500 characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:500]
