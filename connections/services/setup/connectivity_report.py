"""A connectivity test's report made readable: the details shown per step, in order, and the
server's features in one line (the test_connection command's text output, the admin panel).
The stored report and `--json` keep everything."""
from __future__ import annotations

from typing import Any

# Detail keys shown per step, in this order (the command's text output, the admin panel); the
# stored report and --json keep everything.
DETAIL_KEYS: dict[str, list[str]] = {
    "credential": ["name", "username", "version"],
    "token": ["source", "expires_at", "error"],
    "proxy": ["type", "profile", "proxy", "user", "target", "tunnel"],
    "dns": ["host", "addresses"],
    "tcp": ["address", "port"],
    "tls": ["mode", "version", "cipher", "subject", "issuer", "sans", "not_after", "days_left", "verified",
            "verify_error"],
    "greeting": ["text"],
    "capabilities": ["features", "capabilities", "extensions", "sasl", "capabilities_before_tls",
                     "extensions_before_tls"],
    "auth": ["user", "mechanism", "offered", "capabilities_after_login"],
    "folders": ["count", "separator", "folders"],
    "folder": ["folder", "exists"],
    "status": ["folder", "messages", "unseen", "uidvalidity", "uidnext"],
    "stat": ["messages", "size"],
    "uidl": ["supported", "count"],
    "addresses": ["sender", "results"],
}
_FEATURE_LABELS = {"size": "SIZE", "auth": "AUTH", "literal+": "LITERAL+", "8bitmime": "8BITMIME"}


def describe_features(features: dict[str, Any]) -> str:
    """'STARTTLS yes, AUTH CRAM-MD5 LOGIN PLAIN, SIZE 52428800, IDLE yes, MOVE no, ...'"""
    parts = []
    for key, value in features.items():
        label = _FEATURE_LABELS.get(key, key.upper())
        if isinstance(value, bool):
            parts.append(f"{label} {'yes' if value else 'no'}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{label} {' '.join(str(v) for v in value) if value else 'none'}")
        elif value is None:  # unknown: not announced (IMAP: maybe only after a login)
            parts.append(f"{label} not announced")
        else:
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def step_details(step: dict[str, Any], *, everything: bool = False, max_folders: int = 20) -> list[tuple[str, str]]:
    """(label, text) pairs of a report step's details, for people: the usual keys in a fixed
    order (with `everything`, the rest after them), never the certificate chain (shown apart)."""
    detail = dict(step.get("detail") or {})
    if isinstance(detail.get("certificate"), dict):
        # The certificate read after a failed verification: show what the server presents.
        detail = {**detail.pop("certificate"), **detail}
    keys = list(DETAIL_KEYS.get(step.get("name", ""), list(detail)))
    if everything:
        keys += [k for k in detail if k not in keys]
    lines: list[tuple[str, str]] = []
    for key in keys:
        value = detail.get(key)
        if key == "chain_pem" or value in (None, "", [], {}):
            continue
        if key == "results" and isinstance(value, dict):  # SMTP address check
            for address, r in value.items():
                outcome = "accepted" if r.get("accepted") else "REFUSED"
                lines.append((address, f"{outcome} ({r.get('code')} {r.get('reply', '')})"))
            continue
        if key == "features" and isinstance(value, dict):
            text = describe_features(value)
        elif key in ("extensions", "extensions_before_tls") and isinstance(value, dict):
            text = ", ".join(f"{k.upper()} {v}".strip() for k, v in value.items())  # EHLO lines
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, (list, tuple)):
            items = [str(v) for v in value]
            if key == "folders" and not everything and len(items) > max_folders:
                items = items[:max_folders] + [f"... {len(items) - max_folders} more"]
            text = ", ".join(items)
        elif isinstance(value, dict):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
        elif key == "size" and step.get("name") == "stat":
            text = f"{value} bytes"
        else:
            text = str(value)
        lines.append((key.replace("_", " "), text))
    return lines
