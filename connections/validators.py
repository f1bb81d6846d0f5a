"""Field validators of the connection settings: they run in the admin forms and in apply_config
(both call the model's full_clean), so a bad value is refused where it is typed, not at the
first poll or send."""
from __future__ import annotations

import ipaddress
import re
import ssl

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# One DNS label as sent on the wire (after IDNA): letters, digits, hyphens, not at either end.
# Underscores are allowed: DNS carries them and container/internal names use them.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_SSL_LOCATION = re.compile(r"\s*\(_ssl\.c:\d+\)$")


@deconstructible
class HostValidator:
    """A host name (internationalised names allowed) or an IP address literal, nothing else."""

    def __call__(self, value: str) -> None:
        host = value or ""
        if not host:
            return  # required-ness is the field's business
        if host != host.strip() or any(c.isspace() for c in host):
            raise ValidationError(
                "%(host)r is not a valid host name or IP address: it contains spaces", params={"host": host},
                code="invalid_host",
            )
        try:
            ipaddress.ip_address(host)
            return
        except ValueError:
            pass
        if host.startswith("[") and host.endswith("]"):
            raise ValidationError(
                "%(host)r is not a valid host name or IP address: write an IPv6 address without the brackets", params={"host": host}, code="invalid_host",
            )
        if not _is_hostname(host):
            raise ValidationError(
                "%(host)r is not a valid host name or IP address (e.g. mail.example.com, 192.0.2.10, 2001:db8::1)",
                params={"host": host}, code="invalid_host",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostValidator)


def _is_hostname(host: str) -> bool:
    try:
        # The same IDNA encoding the resolver applies (socket.getaddrinfo on a str host).
        ascii_host = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return False
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host  # a fully qualified name's root dot
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return False
    # No top-level domain is numeric: "999.1.1.1" or "10.1" is a mistyped address, not a name.
    return not labels[-1].isdigit()


@deconstructible
class PEMCertificatesValidator:
    """One or more PEM certificates that TLS can trust (what the mail clients load)."""

    def __call__(self, value: str) -> None:
        text = (value or "").strip()
        if not text:
            return
        if "PRIVATE KEY-----" in text:
            raise ValidationError(
                "not a PEM certificate: the text contains a private key; paste only the certificate(s) "
                "(-----BEGIN CERTIFICATE----- …)",
                code="invalid_pem",
            )
        try:
            # The clients' own parsing (connections.mail.tls loads it with load_verify_locations);
            # without create_default_context's system store, which costs ~30 ms per value.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
        except (ssl.SSLError, ValueError) as exc:
            raise ValidationError(
                "not a PEM certificate: %(reason)s", params={"reason": _reason(exc)}, code="invalid_pem",
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PEMCertificatesValidator)


def _reason(exc: Exception) -> str:
    text = str(exc.args[1]) if isinstance(exc, ssl.SSLError) and len(exc.args) > 1 else str(exc)
    text = _SSL_LOCATION.sub("", text)
    if "no start line" in text:
        return (
            "no readable -----BEGIN CERTIFICATE----- … -----END CERTIFICATE----- block "
            "(paste the certificate in PEM form, with its BEGIN and END lines)"
        )
    if "BAD_BASE64_DECODE" in text or "bad base64" in text:
        return "a certificate block is damaged (bad base64); paste it again, unchanged"
    return text


validate_host = HostValidator()
validate_pem_certificates = PEMCertificatesValidator()


def normalise_pem(text: str | None) -> str:
    """CRLF/CR -> LF, trailing blanks off each line, one final newline ("" stays "")."""
    if not text:
        return ""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    body = "\n".join(lines).strip("\n")
    return body + "\n" if body else ""
