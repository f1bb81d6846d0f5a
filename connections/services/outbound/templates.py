"""Message templates per tenant (issue 19): subject, text and HTML bodies as Django templates,
rendered ONCE at enqueue with the variables given then; the rendered result is what is stored
and sent (a later change of the template does not change queued messages).

Templates are rendered by an engine of their own with no template loaders (`{% include %}`
and `{% extends %}` find nothing) and the built-in tags and filters only. The HTML body is
autoescaped; the subject and the text body are not (they are not HTML). A subject is made
one line (whitespace runs become one space).
"""
from __future__ import annotations

from typing import Any, Mapping

from django.template import Context, Engine, TemplateSyntaxError

from ...errors import ValidationError
from ...models import OutboundConnection, OutboxTemplate

__all__ = ["render", "apply", "check", "Rendered"]

_HTML = Engine(dirs=[], app_dirs=False, autoescape=True, loaders=[])
_PLAIN = Engine(dirs=[], app_dirs=False, autoescape=False, loaders=[])

Rendered = tuple[str, str, str]  # subject, text, html


def _load(tenant_id: int, name: str) -> OutboxTemplate:
    try:
        return OutboxTemplate.objects.get(tenant_id=tenant_id, name=name)
    except OutboxTemplate.DoesNotExist:
        names = ", ".join(OutboxTemplate.objects.filter(tenant_id=tenant_id).values_list("name", flat=True)[:20])
        raise ValidationError(f"The tenant has no message template named '{name}'.",
                              hint=f"its templates: {names or 'none'}") from None


def _compile(template: OutboxTemplate):
    compiled = []
    for part, engine, source in (("subject", _PLAIN, template.subject), ("text body", _PLAIN, template.text_body),
                                 ("HTML body", _HTML, template.html_body)):
        try:
            compiled.append(engine.from_string(source) if source else None)
        except TemplateSyntaxError as exc:
            raise ValidationError(f"Template '{template.name}', {part}: {exc}.") from None
    return compiled


def check(template: OutboxTemplate) -> None:
    """Raise ValidationError if a part of the template does not compile (the admin's check)."""
    _compile(template)


def _render(compiled, name: str, context: Mapping[str, Any]) -> Rendered:
    if not isinstance(context, Mapping):
        raise ValidationError(f"The variables of template '{name}' must be a mapping (a JSON object).")
    out = []
    for template in compiled:
        try:
            out.append(template.render(Context(dict(context), autoescape=template.engine.autoescape))
                       if template is not None else "")
        except Exception as exc:  # a filter's error at render time (e.g. a bad date format)
            raise ValidationError(f"Template '{name}' could not be rendered: {exc}.") from None
    subject, text, html = out
    return " ".join(subject.split()), text, html


def render(*, tenant_id: int, name: str, context: Mapping[str, Any]) -> Rendered:
    """Subject, text and HTML of the tenant's template `name` with `context`."""
    template = _load(tenant_id, name)
    return _render(_compile(template), name, context)


def apply(*, connection: OutboundConnection, kwargs: dict[str, Any], cache: dict | None = None) -> dict[str, Any]:
    """Enqueue keyword arguments with `template` (and `context`) replaced by the rendered
    subject / text / html. A subject or body given explicitly wins over the template's.
    `cache` keeps compiled templates across the messages of one enqueue_many."""
    kwargs = dict(kwargs)
    name = kwargs.pop("template")
    context = kwargs.pop("context", None) or {}
    if cache is not None and name in cache:
        compiled = cache[name]
    else:
        compiled = _compile(_load(connection.tenant_id, name))
        if cache is not None:
            cache[name] = compiled
    subject, text, html = _render(compiled, name, context)
    if not kwargs.get("subject"):
        kwargs["subject"] = subject
    if not kwargs.get("text") and not kwargs.get("html"):
        kwargs["text"], kwargs["html"] = text, html
    return kwargs
