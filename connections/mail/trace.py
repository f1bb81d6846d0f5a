"""The step trace of a mail session: each step's name, duration, success and details.

The clients always fill it; the connectivity test (probe.py) and the admin read it. Step names:
proxy, dns, tcp, tls, greeting, capabilities, auth, then the probe's own (folders, stat, ...).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .errors import MailError


@dataclass
class StepRecord:
    name: str
    ok: bool
    duration_ms: float
    detail: dict = field(default_factory=dict)
    message: str = ""
    hint: str = ""
    skipped: bool = False


class Trace:
    """Records each connection step with its duration, success and details."""

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        detail: dict = {}
        started = time.perf_counter()
        try:
            yield detail
        except MailError as exc:
            tls_info = getattr(exc, "tls_info", None)
            if tls_info is not None:
                detail.setdefault("certificate", tls_info.to_dict())
            self.steps.append(
                StepRecord(name, False, _ms(started), detail, exc.message, exc.hint)
            )
            raise
        except BaseException as exc:
            self.steps.append(StepRecord(name, False, _ms(started), detail, f"unexpected error: {exc}"))
            raise
        else:
            skipped = detail.pop("_skipped", None)
            if skipped:
                self.steps.append(StepRecord(name, True, _ms(started), detail, skipped, skipped=True))
            else:
                self.steps.append(StepRecord(name, True, _ms(started), detail))

    def skip(self, name: str, message: str, *, hint: str = "", detail: dict | None = None) -> None:
        self.steps.append(StepRecord(name, True, 0.0, detail or {}, message, hint, skipped=True))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)
