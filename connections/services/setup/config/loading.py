"""Reading a configuration file: YAML that refuses a key given twice, whose mappings remember
the line of each key, so that an error's place (`tenants[0].inbound[1].port`) finds its line
(`line_of`) for the `FILE:LINE: place: message` form of apply_config.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import ConfigValidationError


class _Mapping(dict):
    """A mapping from the file that remembers the line of each key (for error messages)."""

    line: int = 0
    lines: dict[Any, int] = {}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark
            )
        seen[key] = key_node.start_mark
    mapping = _Mapping(loader.construct_mapping(node, deep=deep))
    mapping.line = node.start_mark.line + 1
    mapping.lines = {k: mark.line + 1 for k, mark in seen.items()}
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(text: str) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigValidationError with the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "the file"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigValidationError([f"{where}: not valid YAML: {problem}"]) from None


def line_of(document: Any, error: str) -> int | None:
    """The line in the file of the place an error names ("tenants[0].inbound[1].port: ..."), if known."""
    place = error.split(": ", 1)[0]
    if not place.startswith("tenants"):  # "(file)", or a YAML syntax error that says its line
        return None
    tokens = [int(t) if t.isdigit() else t for t in re.split(r"[\[\].]+", place) if t]
    node, line = document, None
    for token in tokens:
        if isinstance(node, _Mapping) and isinstance(token, str):
            if token not in node.lines:
                return line or node.line or None  # a required key that is missing: its mapping
            line = node.lines[token]
            node = node.get(token)
        elif isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node):
            node = node[token]
            if isinstance(node, _Mapping):
                line = node.line
        else:
            break
    return line
