"""Addresses as the outbox takes them: parsing and checking one address or a list, splitting
what people type into single addresses, the display form, and internationalised domains
(user@bücher.example) in IDNA form (xn--…), since without SMTPUTF8 only ASCII may appear in
addresses on the wire."""
from __future__ import annotations

import functools
import re
from email import errors
from email.headerregistry import Address, HeaderRegistry
from email.utils import getaddresses

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator

from ...errors import ValidationError
from .mime import check_header_value, shorten as _shorten

_email_validator = EmailValidator()
_HEADERS = HeaderRegistry()

def idna_domain(domain: str, *, field: str, original: str) -> str:
    """The ASCII (IDNA, xn--…) form of a domain; address literals ([127.0.0.1]) unchanged."""
    if domain.startswith("[") and domain.endswith("]"):
        return domain
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(
            f"{field}: {_shorten(original)} has a domain that is not a valid internationalised domain name."
        ) from None


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SIMPLE_ADDRESS = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+$")


def parse_address(value: str, *, field: str) -> Address:
    """One address ("Name <user@domain>" or "user@domain"), checked, with its domain in IDNA form."""
    if isinstance(value, str) and _SIMPLE_ADDRESS.match(value):
        # A plain ASCII user@domain (the commonest case): the strict parser would take it as
        # it is; only the validator's checks remain. Same result, a tenth of the time.
        try:
            _email_validator(value)
        except DjangoValidationError:
            pass  # the full path below gives the full message
        else:
            local, _, domain = value.rpartition("@")
            return Address(username=local, domain=domain)
    if not isinstance(value, str):
        check_header_value(value, field=field)  # raises: must be text
    return _parse_address(value, field)


@functools.lru_cache(maxsize=2048)
def _parse_address(value: str, field: str) -> Address:
    """parse_address's full path; cached (Address is immutable): a bulk enqueue repeats its From."""
    check_header_value(value, field=field)
    if not value.strip():
        raise ValidationError(f"{field} contains an empty address.")
    # The strict RFC 5322 parser of the email package, not getaddresses(): that one quietly
    # repairs input (it reads "bob@exa mple.test" as bob@example.test).
    try:
        header = _HEADERS("To", value)
    except (IndexError, ValueError, TypeError, errors.HeaderParseError):  # the parser gives up
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        ) from None
    if any(isinstance(d, errors.NonASCIILocalPartDefect) for d in header.defects):
        raise ValidationError(
            f"{field}: {_shorten(value)} has non-ASCII characters before the @.",
            hint="such addresses need SMTPUTF8, which TenantMail does not use; internationalised domains are fine",
        )
    bad = [d for d in header.defects if not isinstance(d, errors.ObsoleteHeaderDefect)]
    addresses = header.addresses
    if len(addresses) > 1 or len(getaddresses([value])) > 1:
        raise ValidationError(
            f"{field}: {_shorten(value)} contains {max(len(addresses), len(getaddresses([value])))} addresses.",
            hint="give each address as its own list item",
        )
    if bad or len(addresses) != 1 or "@" not in addresses[0].addr_spec:
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        )
    display_name, addr_spec = addresses[0].display_name, addresses[0].addr_spec
    local, _, domain = addr_spec.rpartition("@")
    if not local.isascii():
        raise ValidationError(
            f"{field}: {_shorten(value)} has non-ASCII characters before the @.",
            hint="such addresses need SMTPUTF8, which TenantMail does not use; internationalised domains are fine",
        )
    ascii_domain = idna_domain(domain, field=field, original=value)
    ascii_addr = f"{local}@{ascii_domain}"
    try:
        _email_validator(ascii_addr)
    except DjangoValidationError:
        raise ValidationError(
            f"{field}: {_shorten(value)} is not a valid e-mail address.",
            hint='write it as user@example.org or "Name <user@example.org>"',
        ) from None
    try:
        return Address(display_name=display_name, addr_spec=ascii_addr)
    except (ValueError, IndexError, TypeError) as exc:  # the header parser's own objections
        raise ValidationError(f"{field}: {_shorten(value)} is not a valid e-mail address ({exc}).") from None


def parse_address_list(values: list[str] | tuple[str, ...] | str | None, *, field: str) -> list[Address]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values] if values.strip() else []
    return [parse_address(v, field=field) for v in values]


def split_addresses(values: list[str] | None) -> list[str]:
    """Address lists as people type them: items that may each hold several comma-separated
    addresses ("Doe, John" <j@x> stays one). Each piece is kept as written, for parse_address."""
    result: list[str] = []
    for value in values or []:
        if len(getaddresses([value])) <= 1:
            if value.strip():
                result.append(value.strip())
            continue
        pieces, depth, quoted, start = [], 0, False, 0
        for i, ch in enumerate(value):
            if ch == '"' and (i == 0 or value[i - 1] != "\\"):
                quoted = not quoted
            elif not quoted and ch == "<":
                depth += 1
            elif not quoted and ch == ">":
                depth -= 1
            elif not quoted and depth == 0 and ch == ",":
                pieces.append(value[start:i])
                start = i + 1
        pieces.append(value[start:])
        result.extend(p.strip() for p in pieces if p.strip())
    return result


def format_address(address: Address) -> str:
    """Display form for storing and showing: "Name <user@domain>" (Unicode kept)."""
    if address.display_name:
        return str(Address(display_name=address.display_name, addr_spec=address.addr_spec))
    return address.addr_spec
