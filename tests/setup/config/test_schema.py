"""Configuration as code: the schema covers every configuration field of the models."""
from __future__ import annotations

from connections.models import InboundConnection, OutboundConnection, Tenant, UserCredential
from connections.services.setup.config import fields as config_fields
from connections.services.setup.config import oauth2, schedules, schema


def test_every_configuration_field_of_the_models_is_in_the_schema():
    """A field added to a model must be exported and applied (or declared state)."""
    for model, keys, extra in (
        (Tenant, schema.TENANT_KEYS, set()),
        (UserCredential, schema.CREDENTIAL_KEYS, {"password_env", *oauth2.MODEL_FIELDS}),
        (OutboundConnection, schema.OUTBOUND_KEYS, set(schema.PROXY_FIELDS)),
        (InboundConnection, schema.INBOUND_KEYS, set(schedules.SCHEDULE_FIELDS) | set(schema.PROXY_FIELDS)),
    ):
        covered = {k.field for k in keys} | extra | config_fields.STATE_FIELDS
        fields = {f.name for f in model._meta.concrete_fields if f.editable}
        assert fields - covered == set(), model.__name__
