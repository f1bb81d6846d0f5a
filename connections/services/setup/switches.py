"""Enable and disable connections (the admin's Enable / Disable actions).

A switch, not a reconfiguration: it changes nothing about how the connection connects,
so the role it needs is the operator's (see docs/admin.md). Enabling an inbound
connection schedules its next poll at once; enabling an outbound one asks a worker to
send what waited in its outbox. Disabling stops new polls and sends; a poll or send
already running finishes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from django.db import transaction

from ...models import InboundConnection, OutboundConnection


@dataclass
class SwitchResult:
    changed: list[str] = field(default_factory=list)  # names of the connections switched
    unchanged: list[str] = field(default_factory=list)  # already in that state


def set_enabled(*, kind: str, connection_ids: Sequence[int], enabled: bool) -> SwitchResult:
    """Switch the connections (`kind` "inbound" or "outbound") on or off."""
    model = {"inbound": InboundConnection, "outbound": OutboundConnection}[kind]
    result = SwitchResult()
    with transaction.atomic():
        rows = list(model.objects.select_for_update().filter(pk__in=list(connection_ids)).order_by("name"))
        to_switch = [c for c in rows if c.enabled != enabled]
        result.unchanged = [c.name for c in rows if c.enabled == enabled]
        result.changed = [c.name for c in to_switch]
        model.objects.filter(pk__in=[c.pk for c in to_switch]).update(enabled=enabled)
        for c in to_switch:
            c.enabled = enabled
            if kind == "inbound":
                from ..inbound import schedule

                schedule.reschedule(connection=c)  # next poll now computed; None when disabled
    if enabled and kind == "outbound":
        from ..outbound.dispatch import kick

        for c in to_switch:
            transaction.on_commit(lambda pk=c.pk: kick(connection_id=pk))
    return result
