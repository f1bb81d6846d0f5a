"""Delivering webhooks: at least once, retried with backoff, one run per webhook at a time.

Flow (docs/webhooks.md):
- `message.stored`: a webhook keeps a cursor (the highest StoredMessage id it has a
  delivery row for). A run first turns the connection's newer mails into delivery rows
  (one INSERT for up to MATERIALIZE_BATCH, the unique (webhook, event, object) constraint
  makes it idempotent), so a mail whose signal was lost (a worker killed right after the
  commit) is still delivered: beat's sweep starts a run every minute.
- `outbox.sent` / `outbox.failed`: the signal receiver inserts the delivery rows.
- While the connection's poll runs (up to WEBHOOK_POLL_GRACE_SECONDS) a run waits for it
  to finish: deliveries do not take the CPU from the poll.
- A run holds the webhook's lease (`lease_until`): at most one run — one HTTP request at
  a time over one kept-alive connection — per webhook. A poll of 10,000 mails therefore
  queues a few cheap run tasks, never 10,000 requests.
- Each attempt is signed anew (fresh `t`), with the delivery's uuid in
  X-TenantMail-Delivery on every retry. 2xx = delivered; anything else is retried after
  WEBHOOK_RETRY_BASE_SECONDS * 2^(attempt-1) (capped), up to WEBHOOK_MAX_ATTEMPTS;
  WEBHOOK_DISABLE_AFTER consecutive failed attempts disable the webhook (state shown in the
  admin; its pending deliveries wait for it to be enabled again).
No transaction is open during an HTTP request.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from connections.conf import conf
from ...errors import TenantMailError
from ...models import (
    DeliveryStatus, PollOutcome, PollRun, StoredMessage, Webhook, WebhookDelivery, WebhookState,
)
from ...models.webhooks import EVENT_MESSAGE_STORED
from ..common.guarded_http import TargetBlocked
from . import payloads
from .http import Poster
from .signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature

log = logging.getLogger(__name__)

MATERIALIZE_BATCH = 1000
DUE_BATCH = 100
DEFER_SECONDS = 2.0


def max_attempts() -> int:
    return int(conf.WEBHOOK_MAX_ATTEMPTS)


def disable_after() -> int:
    return int(conf.WEBHOOK_DISABLE_AFTER)


def backoff_seconds(attempts: int) -> float:
    base, cap = float(conf.WEBHOOK_RETRY_BASE_SECONDS), float(conf.WEBHOOK_RETRY_MAX_SECONDS)
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass
class RunReport:
    webhook_id: int
    busy: bool = False
    created: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    stopped: str = ""

    @property
    def attempted(self) -> int:
        return self.delivered + self.failed_attempts


# --------------------------------------------------------------------------- rows


def materialize(webhook: Webhook) -> int:
    """Delivery rows for the connection's mails stored after the cursor; advances it."""
    if not webhook.connection_id:
        return 0
    ids = list(StoredMessage.objects.filter(connection_id=webhook.connection_id, id__gt=webhook.cursor)
               .order_by("id").values_list("id", flat=True)[:MATERIALIZE_BATCH])
    if not ids:
        return 0
    now = timezone.now()
    with transaction.atomic():
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(tenant_id=webhook.tenant_id, webhook_id=webhook.pk, event=EVENT_MESSAGE_STORED,
                             object_id=pk, next_attempt_at=now) for pk in ids],
            ignore_conflicts=True,
        )
        Webhook.objects.filter(pk=webhook.pk, cursor__lt=ids[-1]).update(cursor=ids[-1])
    webhook.cursor = ids[-1]
    return len(ids)


def add_deliveries(*, webhook: Webhook, event: str, object_ids: list[int]) -> None:
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(tenant_id=webhook.tenant_id, webhook_id=webhook.pk, event=event, object_id=pk,
                         next_attempt_at=now) for pk in object_ids],
        ignore_conflicts=True,
    )


def bodies_of(deliveries: list[WebhookDelivery]) -> dict[int, bytes | None]:
    """delivery pk -> its JSON body, built from the current rows (a few queries for the
    whole batch); None when the object is gone."""
    stored = [d.object_id for d in deliveries if d.event == EVENT_MESSAGE_STORED]
    data = payloads.messages_stored(stored) if stored else {}
    result: dict[int, bytes | None] = {}
    for d in deliveries:
        item = data.get(d.object_id) if d.event == EVENT_MESSAGE_STORED else payloads.outbox_finished(d.object_id)
        if item is None:
            result[d.pk] = None
            continue
        document = {"event": d.event, "delivery": str(d.uuid), "created_at": d.created_at.isoformat(), "data": item}
        result[d.pk] = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return result


# --------------------------------------------------------------------------- lease


def _acquire(webhook_id: int, seconds: float) -> bool:
    now = timezone.now()
    return Webhook.objects.filter(pk=webhook_id).filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(
        lease_until=now + timedelta(seconds=seconds)) == 1


def _release(webhook_id: int) -> None:
    Webhook.objects.filter(pk=webhook_id).update(lease_until=None)


def _poll_running(webhook: Webhook) -> bool:
    """Is the connection's poll running (and younger than WEBHOOK_POLL_GRACE_SECONDS)?"""
    if not webhook.connection_id:
        return False
    grace = float(conf.WEBHOOK_POLL_GRACE_SECONDS)
    if grace <= 0:
        return False
    return PollRun.objects.filter(connection_id=webhook.connection_id, outcome=PollOutcome.RUNNING,
                                  started_at__gt=timezone.now() - timedelta(seconds=grace)).exists()


def _defer(webhook_id: int) -> None:
    """Wait for the poll: keep the lease (kicks meanwhile find the webhook busy) and look
    again when it expires."""
    Webhook.objects.filter(pk=webhook_id).update(lease_until=timezone.now() + timedelta(seconds=DEFER_SECONDS))
    kick(webhook_id=webhook_id, countdown=DEFER_SECONDS + 0.5)


# --------------------------------------------------------------------------- run


def usable(webhook: Webhook) -> bool:
    return webhook.enabled and webhook.state == WebhookState.ACTIVE


def run(*, webhook_id: int, budget: float | None = None) -> RunReport:
    """Deliver what is due for one webhook until nothing is, an attempt fails (the receiver
    is down: the rest waits for its backoff), or the time budget is spent."""
    report = RunReport(webhook_id)
    budget = budget if budget is not None else float(conf.WEBHOOK_RUN_SECONDS)
    timeout = float(conf.WEBHOOK_TIMEOUT_SECONDS)
    if not _acquire(webhook_id, budget + timeout + 30):
        report.busy = True
        return report
    poster = None
    deferred = False
    try:
        end = time.monotonic() + budget
        while time.monotonic() < end:
            webhook = Webhook.objects.select_related("tenant").filter(pk=webhook_id).first()
            if webhook is None or not usable(webhook) or not webhook.tenant.active:
                report.stopped = "webhook disabled or gone"
                break
            if report.attempted == 0 and _poll_running(webhook):
                # Deliveries would compete with the poll for the CPU: they start when it
                # ends (its last batch's signal, or this follow-up), at most the grace later.
                deferred = True
                report.stopped = "waiting for the connection's poll to finish"
                break
            report.created += materialize(webhook)
            due = list(WebhookDelivery.objects.filter(
                webhook_id=webhook_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now(),
            ).order_by("next_attempt_at", "id")[:DUE_BATCH])
            if not due:
                break
            if poster is None:
                poster = Poster(webhook.url, timeout=timeout)
            bodies = bodies_of(due)
            done: list[WebhookDelivery] = []
            failed = False
            failure = None
            try:
                for delivery in due:
                    failure = _attempt(webhook, delivery, bodies[delivery.pk], poster)
                    if failure is not None:
                        failed = True
                        report.failed_attempts += 1
                        break
                    done.append(delivery)
                    if time.monotonic() >= end:
                        break
            finally:
                _record_delivered(webhook, done)  # also when interrupted: nothing sent twice needlessly
            if failure is not None:
                _record_failure(webhook, delivery, *failure)
            report.delivered += sum(1 for d in done if d.status == DeliveryStatus.DELIVERED)
            if failed:
                report.stopped = "an attempt failed"
                break
    except TenantMailError as exc:  # e.g. a URL that cannot work, an undecryptable secret
        report.stopped = str(exc)
        log.warning("webhook %s: %s", webhook_id, exc)
    finally:
        if poster is not None:
            poster.close()
        _defer(webhook_id) if deferred else _release(webhook_id)
    if report.attempted:
        schedule_next(webhook_id=webhook_id)
    elif not deferred:
        schedule_next(webhook_id=webhook_id, only_new=True)  # mail committed while we held the lease
    return report


def _attempt(webhook: Webhook, delivery: WebhookDelivery, body: bytes | None,
             poster: Poster) -> tuple[int | None, int, str, bool] | None:
    """One POST. None when the delivery is done (delivered, or failed because its object is
    gone; its fields are set, the caller writes them), else (code, latency ms, error,
    permanent: the URL's host is in TENANTMAIL_BLOCKED_NETWORKS)."""
    if body is None:
        delivery.status, delivery.last_error, delivery.next_attempt_at = (
            DeliveryStatus.FAILED, "The message no longer exists.", None)
        return None
    stamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "TenantMail-Webhook/1",
        SIGNATURE_HEADER: signature(secret=webhook.secret, body=body, timestamp=stamp),
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.uuid),
    }
    started = time.monotonic()
    code, error = None, ""
    try:
        code = poster.post(body, headers)
    except TargetBlocked as exc:  # nothing was sent; retrying cannot help
        return None, int((time.monotonic() - started) * 1000), str(exc), True
    except Exception as exc:  # OSError, http.client.HTTPException, ssl errors, …
        error = f"{type(exc).__name__}: {exc}"
    latency = int((time.monotonic() - started) * 1000)
    if code is not None and 200 <= code < 300:
        now = timezone.now()
        delivery.status, delivery.attempts, delivery.last_attempt_at, delivery.delivered_at = (
            DeliveryStatus.DELIVERED, delivery.attempts + 1, now, now)
        delivery.response_code, delivery.latency_ms, delivery.last_error, delivery.next_attempt_at = (
            code, latency, "", None)
        return None
    return code, latency, error or f"HTTP {code} from the receiver", False


def _record_failure(webhook: Webhook, delivery: WebhookDelivery, code: int | None, latency: int,
                    error: str, permanent: bool = False) -> None:
    """A failed attempt: backoff (or give up), count it, disable the webhook at the limit.
    A permanent failure (blocked target) gives up at once and disables the webhook at once:
    the other deliveries wait (replayable) until an operator fixes the URL."""
    now = timezone.now()
    attempts = delivery.attempts + 1
    gave_up = permanent or attempts >= max_attempts()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING, attempts=attempts,
        last_attempt_at=now, response_code=code, latency_ms=latency, last_error=error[:2000],
        next_attempt_at=None if gave_up else now + timedelta(seconds=backoff_seconds(attempts)))
    Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    limit = disable_after()
    active = Webhook.objects.filter(pk=webhook.pk, state=WebhookState.ACTIVE)
    if permanent:
        disabled = active.update(state=WebhookState.DISABLED, disabled_at=now, state_detail=f"Disabled: {error[:500]}")
    else:
        disabled = active.filter(consecutive_failures__gte=limit).update(
            state=WebhookState.DISABLED, disabled_at=now,
            state_detail=f"Disabled after {limit} failed attempts in a row; last: {error[:500]}")
    if disabled:
        log.warning("webhook %s disabled: %s", webhook.pk, "its URL's host is blocked" if permanent
                    else f"{limit} failed attempts in a row")


_DONE_FIELDS = ["status", "attempts", "last_attempt_at", "delivered_at", "response_code", "latency_ms",
                "last_error", "next_attempt_at"]


def _record_delivered(webhook: Webhook, done: list[WebhookDelivery]) -> None:
    """Write a batch's finished deliveries in one statement; a success resets the webhook's
    failure count."""
    if not done:
        return
    with transaction.atomic():
        WebhookDelivery.objects.bulk_update(done, _DONE_FIELDS, batch_size=DUE_BATCH)
        if any(d.status == DeliveryStatus.DELIVERED for d in done):
            Webhook.objects.filter(pk=webhook.pk).update(consecutive_failures=0, last_success_at=timezone.now())


# --------------------------------------------------------------------------- scheduling


def kick(*, webhook_id: int, countdown: float = 0) -> None:
    """Queue a delivery run; the beat sweep is the safety net when the broker is down."""
    from ... import tasks

    try:
        tasks.deliver_webhook.apply_async((webhook_id,), countdown=max(0.0, countdown) or None,
                                          expires=countdown + 3600)
    except Exception as exc:
        log.warning("webhooks: could not queue deliver_webhook(%s): %s", webhook_id, type(exc).__name__)


def schedule_next(*, webhook_id: int, only_new: bool = False) -> None:
    """After a run that sent something: one follow-up run when the next delivery is due.
    `only_new`: only when mail was stored after the cursor (a run that sent nothing)."""
    nxt = None if only_new else (
        WebhookDelivery.objects.filter(webhook_id=webhook_id, status=DeliveryStatus.PENDING)
        .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first())
    webhook = Webhook.objects.filter(pk=webhook_id).first()
    if webhook is None or not usable(webhook):
        return
    if nxt is not None:
        kick(webhook_id=webhook_id, countdown=(nxt - timezone.now()).total_seconds())
    elif webhook.connection_id and StoredMessage.objects.filter(
            connection_id=webhook.connection_id, id__gt=webhook.cursor).exists():
        kick(webhook_id=webhook_id)


def sweep() -> int:
    """Beat: start a run for every usable webhook with due or not yet materialized work."""
    now = timezone.now()
    due = set(WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now,
                                             webhook__enabled=True, webhook__state=WebhookState.ACTIVE)
              .values_list("webhook_id", flat=True).distinct())
    for webhook in Webhook.objects.filter(enabled=True, state=WebhookState.ACTIVE, connection__isnull=False).only(
            "id", "connection_id", "cursor"):
        if webhook.pk not in due and StoredMessage.objects.filter(
                connection_id=webhook.connection_id, id__gt=webhook.cursor).exists():
            due.add(webhook.pk)
    for webhook_id in sorted(due):
        kick(webhook_id=webhook_id)
    return len(due)
