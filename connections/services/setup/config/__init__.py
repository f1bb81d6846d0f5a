"""Configuration as code: export tenants, credentials and connections to YAML and apply a file
(`manage.py export_config` / `apply_config`; contract: docs/config.md).

    loading.py     YAML with the line of each key; line_of for `FILE:LINE: place: message`
    schema.py      the keys, declared with pydantic (fields.py: their types and messages)
    validation.py  step 1: the whole document checked, every error with its place (errors.py)
    applying.py    steps 2 and 3: the plan (plan.py; credentials, proxies, connections, prune)
                   and its write in one transaction (writing.py)
    exporting.py   the database as a document and as YAML
    oauth2.py, proxies.py, schedules.py, webhooks.py: the keys of one capability each
"""
from .applying import apply
from .errors import ConfigValidationError
from .exporting import dump, export
from .loading import line_of, load
from .plan import Plan

__all__ = ["ConfigValidationError", "Plan", "apply", "dump", "export", "line_of", "load"]
