"""What one poll did (PollResult) and how a stored batch counts into it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ... import signals
from ...errors import TenantMailError
from ...models import PollOutcome
from .storage import StoreOutcome


@dataclass
class PollResult:
    connection_id: int
    outcome: str
    poll_run_id: int | None = None
    fetched: int = 0
    stored: int = 0
    skipped: int = 0
    failed: int = 0
    oversized: int = 0
    recovered: int = 0
    bytes: int = 0
    duration_ms: int = 0
    error: str = ""
    stored_ids: list[int] = field(default_factory=list)
    dispatch_lag_s: float | None = None  # scheduled polls: due -> started (/metrics)

    @property
    def ok(self) -> bool:
        return self.outcome in (PollOutcome.SUCCESS, PollOutcome.LOCKED)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("stored_ids")
        return data

    def summary(self) -> str:
        text = (
            f"{self.outcome}: fetched {self.fetched}, stored {self.stored}, skipped {self.skipped}, "
            f"failed {self.failed}"
        )
        if self.oversized:
            text += f", oversized {self.oversized}"
        if self.recovered:
            text += f", post-processing completed for {self.recovered} earlier mail(s)"
        text += f"; {self.bytes} bytes in {self.duration_ms} ms"
        if self.error:
            text += f". {self.error}"
        return text


class PollAborted(TenantMailError):
    """The poll cannot go on (e.g. its mailbox lock was taken over)."""


def record_outcomes(result: PollResult, outcomes: list[StoreOutcome]) -> list[StoreOutcome]:
    """Count a stored batch; returns the outcomes whose mail is safely in the database."""
    signals.notify_stored(connection_id=result.connection_id, message_ids=[o.pk for o in outcomes if o.status == "stored"])
    done = []
    for outcome in outcomes:
        if outcome.status == "stored":
            result.stored += 1
            if outcome.pk:
                result.stored_ids.append(outcome.pk)
            if outcome.mail.oversized:
                result.oversized += 1
            done.append(outcome)
        elif outcome.status in ("duplicate", "rebound"):
            result.skipped += 1
            done.append(outcome)
        else:
            result.failed += 1
            add_error(result, outcome.error)
        outcome.mail.cleanup()
    return done


def add_error(result: PollResult, text: str) -> None:
    if not text:
        return
    lines = result.error.splitlines() if result.error else []
    if len(lines) < 20:
        lines.append(text)
    elif len(lines) == 20:
        lines.append("… more errors not shown")
    result.error = "\n".join(lines)
