"""Forms that fit (issue 20, item 4): only the fields that apply to the chosen protocol,
schedule form, post-processing and authentication are shown.

Progressive disclosure that also works without JavaScript: every dependent field carries
`data-tm-when="<field>:<value>|<value>"` and connections/disclosure.js hides its row while the
controlling choice says it does not apply; the server, JavaScript or not, ignores such a
field and stores its default (so nothing stale survives a switch, e.g. a cron expression
behind an interval schedule).
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest

# field -> (controlling field, the values for which it applies)
_AUTH = ("authentication", ("plain", "encrypted"))
INBOUND_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "folder": ("protocol", ("imap",)),
    "selection": ("protocol", ("imap",)),
    "archive_folder": ("post_processing", ("move", "move_and_mark_read")),
    "schedule_every": ("schedule_kind", ("interval", "weekly")),
    "schedule_weekdays": ("schedule_kind", ("weekly",)),
    "schedule_start_hour": ("schedule_kind", ("weekly",)),
    "schedule_end_hour": ("schedule_kind", ("weekly",)),
    "schedule_cron": ("schedule_kind", ("cron",)),
    "credential_name": _AUTH,
}
OUTBOUND_RULES: dict[str, tuple[str, tuple[str, ...]]] = {"credential_name": _AUTH}
# Read-only state that means nothing before the first IMAP poll.
IMAP_STATE_FIELDS = ("imap_uidvalidity", "imap_resync", "imap_resync_state")


def applies(rules: dict, field: str, data: dict) -> bool:
    rule = rules.get(field)
    return rule is None or str(data.get(rule[0]) or "") in rule[1]


class DisclosureFormMixin(forms.ModelForm):
    """Marks the dependent fields for the script and clears the ones that do not apply."""

    disclosure_rules: dict[str, tuple[str, tuple[str, ...]]] = {}

    class Media:
        js = ["connections/disclosure.js"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, (control, values) in self.disclosure_rules.items():
            if name in self.fields and control in self.fields:
                self.fields[name].widget.attrs["data-tm-when"] = f"{control}:{'|'.join(values)}"

    def clean(self):
        cleaned = super().clean()
        model = self._meta.model
        for name in self.disclosure_rules:
            if name not in self.fields or applies(self.disclosure_rules, name, {**self._current(), **cleaned}):
                continue
            self.errors.pop(name, None)  # a value that does not apply cannot be wrong
            cleaned[name] = model._meta.get_field(name).get_default()
        return cleaned

    def _current(self) -> dict:
        return {f.name: getattr(self.instance, f.name, None) for f in self._meta.model._meta.concrete_fields}


class ImapStateFieldsetMixin:
    """Hides UIDVALIDITY and "IMAP re-sync" for POP3 and before the first poll."""

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        if obj is not None and getattr(obj, "protocol", "") == "imap" and (obj.last_poll_at or obj.imap_resync):
            return fieldsets
        out = []
        for title, options in fieldsets:
            fields = [f for f in options.get("fields", ()) if f not in IMAP_STATE_FIELDS]
            if fields:
                out.append((title, {**options, "fields": fields}))
        return out
