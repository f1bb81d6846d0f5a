"""TLS for the mail clients: the SSL context, and the certificate details for the report.

Verification is on unless the connection explicitly turns it off: the system trust store plus
the connection's own trusted CA (PEM), host name checked, TLS 1.2 at least.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field, fields

from cryptography import x509

from .errors import TLSError
from .settings import MailSettings

# OpenSSL verify codes we explain in words (the rest use OpenSSL's own message).
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64
_EXPIRED = 10
_NOT_YET_VALID = 9
_SELF_SIGNED = 18
_SELF_SIGNED_IN_CHAIN = 19
_NO_LOCAL_ISSUER = 20
_NO_ISSUER_CERT = 2


def make_ssl_context(settings: MailSettings) -> ssl.SSLContext:
    """The client context: system store + settings.trusted_ca, host name check, TLS >= 1.2.

    Contexts are cached per (trusted CA, verification): loading the system trust store costs
    tens of milliseconds, more than a whole poll of an empty mailbox. A context is safe to share
    between connections and threads; do not modify the one returned.
    """
    return _cached_context(settings.trusted_ca.strip(), bool(settings.verify_certificate))


@functools.lru_cache(maxsize=128)
def _cached_context(trusted_ca: str, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A trusted *server certificate* (not only a CA) is a trust anchor of its own, as the
    # connection's "trusted CA or certificate" field promises (Python 3.13's default too).
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if trusted_ca:
        try:
            context.load_verify_locations(cadata=trusted_ca)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSError(
                f"the connection's trusted CA is not a valid PEM certificate ({exc})",
                hint="paste one or more PEM certificates (-----BEGIN CERTIFICATE----- ...)",
                step="tls",
                transient=False,
            ) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class TLSInfo:
    """What the server presented and how the handshake went."""

    version: str = ""
    cipher: str = ""
    subject: str = ""
    issuer: str = ""
    sans: list[str] = field(default_factory=list)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    days_left: int | None = None
    verified: bool = False
    verify_error: str = ""
    chain_pem: str = ""

    @property
    def names(self) -> list[str]:
        """The names the certificate is valid for (SANs, else the subject's CN)."""
        if self.sans:
            return list(self.sans)
        for part in self.subject.split(","):
            if part.strip().upper().startswith("CN="):
                return [part.strip()[3:]]
        return []

    def to_dict(self) -> dict:
        # Shallow, not dataclasses.asdict: its deep copies cost a poll 60 µs.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["sans"] = list(self.sans)
        for key in ("not_before", "not_after"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _name(value: x509.Name) -> str:
    try:
        return value.rfc4514_string()
    except Exception:  # a name with odd attributes must not break the report
        return str(value)


def tls_info_from_socket(sock: ssl.SSLSocket, *, verified: bool, verify_error: str = "") -> TLSInfo:
    """Read version, cipher and the certificate details from a connected TLS socket."""
    info = TLSInfo(verified=verified, verify_error=verify_error)
    info.version = sock.version() or ""
    cipher = sock.cipher()
    info.cipher = cipher[0] if cipher else ""
    der = sock.getpeercert(binary_form=True)
    if not der:
        return info
    try:
        info.subject, info.issuer, sans, info.not_before, info.not_after = _certificate_details(der)
    except ValueError as exc:
        info.verify_error = info.verify_error or f"unreadable certificate: {exc}"
        return info
    info.sans = list(sans)
    info.days_left = (info.not_after - dt.datetime.now(dt.timezone.utc)).days
    info.chain_pem = _chain_pem(sock, der)
    return info


@functools.lru_cache(maxsize=512)
def _certificate_details(der: bytes) -> tuple[str, str, tuple[str, ...], dt.datetime, dt.datetime]:
    """(subject, issuer, SANs, not before, not after) of a DER certificate. Cached: a server
    presents the same certificate poll after poll, and reading it costs 0.1 ms."""
    cert = x509.load_der_x509_certificate(der)
    sans: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple([str(n) for n in san.get_values_for_type(x509.DNSName)]
                     + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)])
    except Exception:  # no SAN extension, or one that cannot be read: the subject's CN names it
        pass
    return _name(cert.subject), _name(cert.issuer), sans, cert.not_valid_before_utc, cert.not_valid_after_utc


def _chain_pem(sock: ssl.SSLSocket, leaf_der: bytes) -> str:
    """The chain the server sent, as PEM (at least the leaf).

    Python 3.11 has no public API for the chain; the private `get_unverified_chain` of the
    underlying _ssl socket exists since 3.10 and is used when present.
    """
    sslobj = getattr(sock, "_sslobj", None)
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is not None:
        try:
            chain = getter() or []
            pems = [c.public_bytes(ssl._ssl.ENCODING_PEM) for c in chain]  # type: ignore[attr-defined]
            if pems:
                return "".join(p if isinstance(p, str) else p.decode("ascii") for p in pems)
        except Exception:
            pass
    return ssl.DER_cert_to_PEM_cert(leaf_der)


# --- reading the certificate of a server whose certificate failed verification ------------

def _read_until(sock: socket.socket, predicate, limit: int = 65536) -> bytes:
    data = b""
    while not predicate(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def _smtp_done(data: bytes) -> bool:
    lines = data.split(b"\r\n")
    return len(lines) >= 2 and any(len(ln) >= 4 and ln[3:4] == b" " for ln in lines[:-1])


def _starttls_prelude(sock: socket.socket, protocol: str) -> None:
    """Bring a plain connection to the point where a TLS handshake starts."""
    if protocol == "smtp":
        _read_until(sock, _smtp_done)
        sock.sendall(b"EHLO tenantmail.invalid\r\n")
        _read_until(sock, _smtp_done)
        sock.sendall(b"STARTTLS\r\n")
        _read_until(sock, _smtp_done)
    elif protocol == "imap":
        _read_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(b"t1 STARTTLS\r\n")
        _read_until(sock, lambda d: b"t1 " in d and d.endswith(b"\r\n"))
    elif protocol == "pop3":
        _read_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(b"STLS\r\n")
        _read_until(sock, lambda d: d.endswith(b"\r\n"))


def peek_certificate(
    host: str, port: int, *, timeout: float, starttls: str | None = None, verify_error: str = "",
    server_name: str | None = None,
) -> TLSInfo | None:
    """Handshake once more WITHOUT verification, only to read what the server presents.

    Used after a failed verification so that the report can say which names the certificate
    is for and show the chain the operator may decide to trust. Nothing else is sent.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store needed: nothing is verified
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if starttls:
                _starttls_prelude(raw, starttls)
            name = server_name or host
            server_hostname = None if _is_ip(name) else name
            with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
                return tls_info_from_socket(tls, verified=False, verify_error=verify_error)
    except (OSError, ValueError):
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def tls_error_from(
    exc: BaseException, settings: MailSettings, *, starttls: str | None = None
) -> TLSError:
    """Turn an ssl exception into a TLSError whose message says why, with a hint."""
    host, port = settings.host, settings.effective_port
    name = settings.tls_hostname
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        reason = getattr(exc, "verify_message", "") or str(exc)
        info = peek_certificate(host, port, timeout=settings.timeout, starttls=starttls, verify_error=reason, server_name=name)
        names = ", ".join(info.names) if info and info.names else "another name"
        if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            message = f"certificate is for {names}, not {name}"
            hint = (
                f"set the host to a name the certificate covers ({names}), or have the server's "
                "certificate reissued for this name; trusting the certificate does not fix a name mismatch"
            )
        elif code == _EXPIRED:
            when = info.not_after.date().isoformat() if info and info.not_after else "an earlier date"
            message = f"the server's certificate expired on {when}"
            hint = "the server's administrator must renew the certificate"
        elif code == _NOT_YET_VALID:
            message = "the server's certificate is not valid yet"
            hint = "check the clock of this machine and of the server"
        elif code in (_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN, _NO_LOCAL_ISSUER, _NO_ISSUER_CERT):
            issuer = info.issuer if info else "an unknown issuer"
            message = f"the server's certificate is not trusted: {reason} (issuer: {issuer})"
            hint = (
                "if you trust this server, paste its CA certificate (PEM, shown in the "
                "connectivity test's TLS step) into the connection's trusted CA field"
            )
        else:
            message = f"certificate verification failed: {reason}"
            hint = "check the server's certificate chain; the connectivity test shows it"
        return TLSError(message, hint=hint, tls_info=info, transient=False)
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        hint = "check that the server speaks TLS 1.2 or newer on this port"
        if reason in ("WRONG_VERSION_NUMBER", "UNEXPECTED_RECORD", "RECORD_LAYER_FAILURE") or "wrong version" in str(exc):
            hint = (
                "the port does not speak implicit TLS: use protection STARTTLS "
                f"(port {_starttls_port(settings)}) or the server's SSL/TLS port"
            )
        elif "UNSUPPORTED_PROTOCOL" in reason or "VERSION" in reason:
            hint = "the server offers only TLS versions older than 1.2, which are refused"
        return TLSError(f"TLS handshake with {host}:{port} failed: {reason}", hint=hint, transient=False)
    return TLSError(f"TLS handshake with {host}:{port} failed: {exc}", transient=True)


def _starttls_port(settings: MailSettings) -> int:
    from .settings import default_port

    return default_port(settings.protocol, "starttls_mandatory")
