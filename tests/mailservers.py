"""Real Dovecot + Postfix for the test suite (a pytest plugin, loaded from tests/conftest.py).

Fixtures
--------
``mail_servers`` (session)  -> :class:`MailServers`, started once per test session.
``mailbox``      (function) -> ``(address, password)`` of a fresh, empty mailbox user.

What runs (all on 127.0.0.1, free ports, in one temporary directory, own configs; stopped by
pid at session end). Dovecot 2.3: passwd-file with ``{PLAIN}`` passwords (so CRAM-MD5 and APOP
work), ``auth_mechanisms = plain login cram-md5 apop``, ``disable_plaintext_auth = no`` (the
*product* must refuse plain auth without TLS — the server does not), maildir, TLS >= 1.2.
Postfix 3.7: AUTH through Dovecot SASL (PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER); ``example.test`` delivered via
LMTP into Dovecot, so mail sent over SMTP can be read back over IMAP/POP3 (``wait_for_messages``).
Unknown ``@example.test`` recipients are refused at RCPT TO (550 User unknown), other domains
without AUTH get "Relay access denied"; nothing ever leaves the machine. Limit: Dovecot 2.3 has
no SMTPUTF8 (neither LMTP nor LDA), so a mail whose envelope needs it (a UTF-8 sender or
recipient address) is accepted by Postfix and then bounced: use ASCII envelope addresses for
delivery tests. UTF-8 user names and passwords for logging in work everywhere.

``mail_servers.ports`` keys (every value an int port on ``mail_servers.host``):

=====================  =========================================================================
imap                   IMAP, STARTTLS offered (good cert), AUTH=PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER also pre-TLS
imaps                  IMAP implicit TLS (good cert)
pop3                   POP3, STLS offered (good cert); USER/PASS, SASL PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER, APOP
pop3s                  POP3 implicit TLS (good cert)
imap_notls             IMAP, no TLS at all (no STARTTLS capability)
pop3_notls             POP3, no TLS at all (no STLS capability)
submission             SMTP, STARTTLS offered (good cert); AUTH only after STARTTLS
                       (smtpd_tls_auth_only = yes, like a real submission port)
smtps                  SMTP implicit TLS (good cert), AUTH
smtp_notls             SMTP, no STARTTLS, AUTH offered in the clear (PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER)
imaps_wronghost        IMAP implicit TLS, cert (signed by the run's CA) for mail.example.org only
pop3s_wronghost        POP3 implicit TLS, cert for mail.example.org
imap_wronghost         IMAP STARTTLS, cert for mail.example.org
pop3_wronghost         POP3 STLS, cert for mail.example.org
smtps_wronghost        SMTP implicit TLS, cert for mail.example.org
submission_wronghost   SMTP STARTTLS, cert for mail.example.org
imaps_selfsigned       IMAP implicit TLS, self-signed cert for 127.0.0.1/localhost (not from the CA)
pop3s_selfsigned       POP3 implicit TLS, the same self-signed cert
smtps_selfsigned       SMTP implicit TLS, the same self-signed cert
imaps_expired          IMAP implicit TLS, CA-signed cert for 127.0.0.1/localhost, expired
imaps_noidle           IMAP implicit TLS (good cert), no IDLE capability (push falls back)
pop3s_expired          POP3 implicit TLS, the expired cert
smtps_expired          SMTP implicit TLS, the expired cert
=====================  =========================================================================

All listeners share one user database and the same mailboxes.

Attributes: ``host`` ("127.0.0.1"), ``domain`` ("example.test"), ``ca_file``/``ca_pem`` (the
run's CA), ``certs`` (name -> PEM of the leaf certificates: "server", "wronghost",
"selfsigned", "expired"; paste one into ``trusted_ca`` to trust exactly that certificate),
``root`` (the temp dir; logs in ``root/logs``), ``ports``, ``oauth2_port`` (where the OAuth2
test server of tests/oauth2_server.py listens: every Dovecot also has a ``passdb oauth2`` that
introspects tokens there, ``auth_mechanisms`` include ``xoauth2 oauthbearer`` (so does Postfix's
AUTH), and Postfix has ``line_length_limit = 16384`` for long XOAUTH2 initial responses).

Methods
-------
``add_user(*, local=None, password=None) -> (address, password)``
    New user, unique per call. User name = address (``local@example.test``). UTF-8 local parts
    and passwords work (any character except ``:``, ``/`` and control characters in the local
    part). Local parts are matched case-insensitively for ASCII letters.
``add_users(count) -> [(address, password), …]``
    ``count`` new users at once (benchmarks at scale: files written in one go, one postmap).
``append(address, messages, *, folder="INBOX", seen=False)``
    Stores raw mails (bytes) with one MULTIAPPEND + LITERAL+ command per batch (folder created
    if missing). Thousands per second.
``server_copies(address, *, folder="INBOX") -> {uid: bytes}``
    What the server hands out (``UID FETCH BODY.PEEK[]``): compare stored mails with these,
    not with the source files (Dovecot rewrites e.g. NUL bytes).
``wait_for_messages(address, *, count=1, folder="INBOX", timeout=10) -> {uid: bytes}``
    Polls until ``count`` mails are there (SMTP delivery via LMTP is asynchronous, ~50 ms).
``wait_for_queue_empty(*, timeout=10)``
    Polls until Postfix's queue (incoming, active, deferred, hold, maildrop) holds no mail.
``cpu_seconds()`` / ``cpu_seconds_by_process()``
    CPU seconds of every daemon of this run so far, in all or by process name (benchmarks).
``flags(address, *, folder="INBOX") -> {uid: set of flags}``  (without ``\\Recent``)
``folders(address) -> list[str]``
``password(address) -> str``  (of a user made by add_user)
``mail_settings(*, protocol, protection, authentication, username, listener=None, **overrides)``
    A ``connections.mail.MailSettings`` for the right listener, with ``trusted_ca`` = the CA
    and ``timeout`` = 10 unless overridden. Default listener by protocol and protection:
    off -> ``<proto>_notls``; starttls_* -> ``imap`` / ``pop3`` / ``submission``;
    ssl_tls -> ``imaps`` / ``pop3s`` / ``smtps``. ``listener="imaps_wronghost"`` (any key of
    ``ports``) picks another one; ``port=`` and ``host=`` in overrides win over everything.

Good to know: a failed login is answered after about 0.5 s (Dovecot), without the growing
per-IP penalty (disabled here). Passwords may be any Unicode except CR, LF and NUL.

``start_mail_servers(postfix_delivery="discard")`` (benchmarks only): Postfix accepts, queues
(cleanup, queue files with their fsync, qmgr: all real) and then hands every
``example.test`` mail to its own ``discard`` transport instead of LMTP into Dovecot — a mail
server whose mailbox delivery runs on other machines. ``wait_for_queue_empty()`` then
waits until Postfix has dealt with every accepted mail; ``wait_for_messages`` has nothing to
count. The default, ``"lmtp"``, is what every test uses.

Outside pytest: ``servers = start_mail_servers()`` ... ``servers.stop()``. Daemons are stopped at
session end, at interpreter exit, and by a small watchdog process even when the test process is
killed (SIGKILL). ``TM_KEEP_MAILSERVERS=1`` keeps the temp directory (configs, logs) for a look.

The Debian packages (dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix openssl)
are installed with apt-get when missing (needs root, which Dovecot/Postfix need here anyway).
"""
from __future__ import annotations

import atexit
import base64
import datetime as dt
import grp
import imaplib
import ipaddress
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pytest

HOST = "127.0.0.1"
DOMAIN = "example.test"
WRONG_HOST = "mail.example.org"

DEBIAN_PACKAGES = ["dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd", "postfix", "openssl"]
_NEEDED_FILES = [
    "/usr/sbin/dovecot", "/usr/lib/dovecot/imap-login", "/usr/lib/dovecot/pop3-login",
    "/usr/lib/dovecot/lmtp", "/usr/lib/postfix/sbin/master", "/usr/sbin/postmap",
]
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"

# Dovecot instances: one TLS certificate each, so every certificate variant is its own instance.
# name -> (certificate name or None for no TLS, {port key: (service, listener kind)})
_DOVECOT_INSTANCES: dict[str, tuple[str | None, dict[str, tuple[str, bool]]]] = {
    # port key -> (login service, implicit TLS?)
    "main": ("server", {"imap": ("imap", False), "imaps": ("imap", True),
                        "pop3": ("pop3", False), "pop3s": ("pop3", True)}),
    "notls": (None, {"imap_notls": ("imap", False), "pop3_notls": ("pop3", False)}),
    "wronghost": ("wronghost", {"imap_wronghost": ("imap", False), "imaps_wronghost": ("imap", True),
                                "pop3_wronghost": ("pop3", False), "pop3s_wronghost": ("pop3", True)}),
    "selfsigned": ("selfsigned", {"imaps_selfsigned": ("imap", True), "pop3s_selfsigned": ("pop3", True)}),
    "expired": ("expired", {"imaps_expired": ("imap", True), "pop3s_expired": ("pop3", True)}),
    "noidle": ("server", {"imaps_noidle": ("imap", True)}),
}
# Instance name -> extra Dovecot settings.
_DOVECOT_EXTRA = {
    # A server without IDLE (its post-login capabilities leave it out).
    "noidle": "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ UNSELECT UIDPLUS MOVE\n",
}
# Postfix listeners: port key -> (certificate, -o options)
_POSTFIX_LISTENERS: dict[str, tuple[str | None, list[str]]] = {
    "submission": ("server", ["smtpd_tls_security_level=may", "smtpd_tls_auth_only=yes"]),
    "smtps": ("server", ["smtpd_tls_wrappermode=yes"]),
    "smtp_notls": (None, ["smtpd_tls_security_level=none"]),
    "smtps_wronghost": ("wronghost", ["smtpd_tls_wrappermode=yes"]),
    "submission_wronghost": ("wronghost", ["smtpd_tls_security_level=may", "smtpd_tls_auth_only=yes"]),
    "smtps_selfsigned": ("selfsigned", ["smtpd_tls_wrappermode=yes"]),
    "smtps_expired": ("expired", ["smtpd_tls_wrappermode=yes"]),
}

_DEFAULT_LISTENER = {
    ("smtp", "off"): "smtp_notls", ("smtp", "starttls_mandatory"): "submission",
    ("smtp", "starttls_optional"): "submission", ("smtp", "ssl_tls"): "smtps",
    ("imap", "off"): "imap_notls", ("imap", "starttls_mandatory"): "imap",
    ("imap", "starttls_optional"): "imap", ("imap", "ssl_tls"): "imaps",
    ("pop3", "off"): "pop3_notls", ("pop3", "starttls_mandatory"): "pop3",
    ("pop3", "starttls_optional"): "pop3", ("pop3", "ssl_tls"): "pop3s",
}


class MailServersError(RuntimeError):
    pass


# --------------------------------------------------------------------------- install
def ensure_installed() -> None:
    """apt-get the Debian packages when a binary is missing (no daemon gets started)."""
    if all(os.path.exists(p) for p in _NEEDED_FILES):
        return
    if os.geteuid() != 0:
        raise MailServersError(
            "Dovecot/Postfix are not installed and the tests do not run as root: "
            f"apt-get install {' '.join(DEBIAN_PACKAGES)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
    )
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:  # the package scripts must not start the system daemons
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES], env=env, check=True
        )
    finally:
        if created:
            policy.unlink(missing_ok=True)
    missing = [p for p in _NEEDED_FILES if not os.path.exists(p)]
    if missing:
        raise MailServersError(f"still missing after apt-get: {missing}")


# --------------------------------------------------------------------------- certificates
def _make_certificates(directory: Path) -> dict[str, tuple[Path, Path, str]]:
    """CA + leaf certificates. Returns name -> (cert file, key file, cert PEM); "ca" included."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TenantMail tests"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(label: str, cert, k) -> tuple[Path, Path, str]:
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        cert_path, key_path = directory / f"{label}.crt", directory / f"{label}.key"
        cert_path.write_text(pem)
        key_path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path, pem

    ca_key = key()
    ca_cert = (
        x509.CertificateBuilder().subject_name(name("TenantMail Test CA")).issuer_name(name("TenantMail Test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": write("ca", ca_cert, ca_key)}

    def leaf(label: str, cn: str, sans: list, *, self_signed: bool = False,
             not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> None:
        k = key()
        issuer_cert, issuer_key = (None, k) if self_signed else (ca_cert, ca_key)
        builder = (
            x509.CertificateBuilder().subject_name(name(cn))
            .issuer_name(name(cn) if self_signed else ca_cert.subject)
            .public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=self_signed, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        )
        if issuer_cert is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        out[label] = write(label, builder.sign(issuer_key, hashes.SHA256()), k)

    local_sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    leaf("server", "localhost", local_sans)
    leaf("wronghost", WRONG_HOST, [x509.DNSName(WRONG_HOST)])
    leaf("selfsigned", "localhost", local_sans, self_signed=True)
    leaf("expired", "localhost", local_sans, not_before=now - dt.timedelta(days=60),
         not_after=now - dt.timedelta(days=2))
    return out


# --------------------------------------------------------------------------- helpers
def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_until(predicate, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    tails = []
    for log in sorted(logs.glob("*.log")):
        tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:]))
    raise MailServersError(f"{what} did not come up within {timeout}s\n" + "\n".join(tails))


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL, so a
    crashed run leaves no daemons behind (each master then stops its own children)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the session finalizer and atexit still stop them
        pass


_WATCHDOG = """
import os, signal, sys, time
parent, groups = int(sys.argv[1]), [int(g) for g in sys.argv[2:]]
while os.getppid() == parent:
    time.sleep(0.5)
for sig, pause in ((signal.SIGTERM, 1.5), (signal.SIGKILL, 0)):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    time.sleep(pause)
"""


def _start_watchdog(groups: list[int]) -> subprocess.Popen:
    """A tiny process that stops the servers' process groups if the test process dies without
    cleaning up (SIGKILL, OOM): Dovecot alone may take seconds to shut down."""
    import sys

    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), *map(str, groups)],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _plain_b64(user: str, password: str) -> str:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def _check_local(local: str) -> None:
    if not local or any(c in local for c in ":/@\\") or any(ord(c) < 32 or ord(c) == 127 for c in local) \
            or local.startswith(".") or " " in local:
        raise ValueError(f"unusable local part {local!r} for a test user")


# --------------------------------------------------------------------------- the servers
@dataclass
class MailServers:
    host: str
    domain: str
    ca_file: str
    ca_pem: str
    ports: dict[str, int]
    certs: dict[str, str] = field(default_factory=dict)
    root: Path = field(default_factory=Path)
    _users: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _map_mtime: float = field(default=0.0, repr=False)
    _watchdog: subprocess.Popen | None = field(default=None, repr=False)
    # Where tests/oauth2_server.py listens: Dovecot introspects OAuth2 tokens there.
    oauth2_port: int = 0

    # ----- users
    def add_user(self, *, local: str | None = None, password: str | None = None) -> tuple[str, str]:
        """A new mailbox user; returns (address, password). The user name is the address."""
        with self._lock:
            if local is None:
                local = f"user{next(self._counter)}-{uuid.uuid4().hex[:8]}"
            _check_local(local)
            if password is None:
                password = "pw-" + uuid.uuid4().hex
            if not password or any(c in password for c in "\r\n\0"):
                raise ValueError("test passwords must be non-empty and contain no CR, LF or NUL")
            address = f"{local}@{self.domain}"
            key = _ascii_lower(address)
            if key in self._users:
                raise ValueError(f"user {address!r} exists already")
            self._users[key] = password
            self._write_user_files(key)
        return address, password

    def add_users(self, count: int) -> list[tuple[str, str]]:
        """`count` new mailbox users at once (benchmarks at scale): their passwd-files are
        written in one go and Postfix's map rebuilt once. Returns [(address, password), …]."""
        with self._lock:
            out = []
            for _ in range(count):
                local = f"user{next(self._counter)}-{uuid.uuid4().hex[:8]}"
                password = "pw-" + uuid.uuid4().hex
                address = f"{local}@{self.domain}"
                self._users[_ascii_lower(address)] = password
                self._write_user_file(_ascii_lower(address))
                out.append((address, password))
            self._write_user_files()
        return out

    def password(self, address: str) -> str:
        return self._users[_ascii_lower(address)]

    def _write_user_files(self, new_user: str | None = None) -> None:
        etc = self.root / "etc"
        if new_user is not None:
            self._write_user_file(new_user)
        vmap = etc / "vmailbox"
        tmp = etc / "vmailbox.tmp"
        tmp.write_text("".join(f"{user} ok\n" for user in self._users), encoding="utf-8")
        os.replace(tmp, vmap)
        # hash tables are re-opened by Postfix daemons when the .db file's mtime changes, compared
        # in whole seconds: move it strictly forward on every change so no new user goes unseen.
        subprocess.run(["/usr/sbin/postmap", "-c", str(self.root / "postfix" / "etc"), f"hash:{vmap}"],
                       check=True, capture_output=True)
        stamp = max(time.time(), self._map_mtime) + 1
        os.utime(etc / "vmailbox.db", (stamp, stamp))
        self._map_mtime = stamp

    def _write_user_file(self, user: str) -> None:
        # One passwd-file per user: Dovecot re-reads a passwd-file at most once per second, so a
        # shared file would hide users added within the same second; a new file is read at once.
        # {PLAIN.b64}: any password character is safe in the file, and CRAM-MD5/APOP still work.
        etc = self.root / "etc"
        pw = self._users[user]
        path = etc / "users" / user
        tmp = etc / "users" / f".{user}.tmp"
        tmp.write_text(f"{user}:{{PLAIN.b64}}{base64.b64encode(pw.encode()).decode()}::::::\n", encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, path)

    # ----- IMAP access as the user (over the plain listener, for speed)
    def _imap(self, address: str) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.ports["imap_notls"], timeout=30)
        password = self.password(address)
        conn.authenticate("PLAIN", lambda _: b"\0" + address.encode() + b"\0" + password.encode())
        return conn

    def append(self, address: str, messages: Iterable[bytes], *, folder: str = "INBOX",
               seen: bool = False) -> None:
        """Store raw mails with MULTIAPPEND + LITERAL+ (one command per batch)."""
        password = self.password(address)
        flags = " (\\Seen)" if seen else ""
        sock = socket.create_connection((self.host, self.ports["imap_notls"]), timeout=60)
        reader = sock.makefile("rb")
        try:
            reader.readline()  # greeting
            tags = (f"a{i}" for i in itertools.count())

            def command(line: bytes, tag: str) -> bytes:
                sock.sendall(line)
                while True:
                    reply = reader.readline()
                    if not reply:
                        raise MailServersError("IMAP server closed the connection during append")
                    if reply.startswith(tag.encode() + b" "):
                        return reply

            tag = next(tags)
            reply = command(f"{tag} AUTHENTICATE PLAIN {_plain_b64(address, password)}\r\n".encode(), tag)
            if not reply.split()[1] == b"OK":
                raise MailServersError(f"append: login failed: {reply!r}")
            quoted = _imap_quote(folder)
            if folder.upper() != "INBOX":
                tag = next(tags)
                command(f"{tag} CREATE {quoted}\r\n".encode(), tag)  # NO if it exists: fine
            batch: list[bytes] = []
            size = 0

            def flush() -> None:
                nonlocal batch, size
                if not batch:
                    return
                t = next(tags)
                parts = [f"{t} APPEND {quoted}".encode()]
                for msg in batch:
                    # literal8 (BINARY) for mails with NUL bytes, which a plain literal cannot carry.
                    prefix = "~" if b"\0" in msg else ""
                    parts.append(f"{flags} {prefix}{{{len(msg)}+}}\r\n".encode() + msg)
                reply = command(b"".join(parts) + b"\r\n", t)
                if reply.split()[1] != b"OK":
                    raise MailServersError(f"APPEND failed: {reply[:300]!r}")
                batch, size = [], 0

            for msg in messages:
                batch.append(bytes(msg))
                size += len(msg)
                if len(batch) >= 500 or size >= 20 * 1024 * 1024:
                    flush()
            flush()
            tag = next(tags)
            sock.sendall(f"{tag} LOGOUT\r\n".encode())
        finally:
            reader.close()
            sock.close()

    def server_copies(self, address: str, *, folder: str = "INBOX") -> dict[int, bytes]:
        """UID -> the bytes the server hands out for that mail (UID FETCH BODY.PEEK[])."""
        conn = self._imap(address)
        try:
            typ, data = conn.select(_imap_quote(folder), readonly=True)
            if typ != "OK":
                raise MailServersError(f"cannot select {folder!r}: {data!r}")
            if int(data[0] or 0) == 0:
                return {}
            typ, data = conn.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
            out: dict[int, bytes] = {}
            for item in data:
                if isinstance(item, tuple):
                    m = re.search(rb"UID (\d+)", item[0])
                    if m:
                        out[int(m.group(1))] = item[1]
            return dict(sorted(out.items()))
        finally:
            conn.logout()

    def flags(self, address: str, *, folder: str = "INBOX") -> dict[int, set[str]]:
        conn = self._imap(address)
        try:
            typ, data = conn.select(_imap_quote(folder), readonly=True)
            if int(data[0] or 0) == 0:
                return {}
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            out: dict[int, set[str]] = {}
            for item in data:
                line = item[0] if isinstance(item, tuple) else item
                m = re.search(rb"UID (\d+)", line or b"")
                f = re.search(rb"FLAGS \(([^)]*)\)", line or b"")
                if m and f:
                    out[int(m.group(1))] = set(f.group(1).decode().split()) - {"\\Recent"}
            return out
        finally:
            conn.logout()

    def folders(self, address: str) -> list[str]:
        conn = self._imap(address)
        try:
            typ, data = conn.list()
            names = []
            for line in data:
                m = re.match(rb'\([^)]*\) (?:"[^"]*"|NIL) (.*)$', line or b"")
                if m:
                    names.append(m.group(1).decode().strip('"'))
            return names
        finally:
            conn.logout()

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) used so far by this run's daemons: every process of the
        Postfix and Dovecot masters' sessions, with their ended children's time (a master reaps
        them). The difference of two readings is what the servers spent meanwhile."""
        return sum(self.cpu_seconds_by_process().values())

    def cpu_seconds_by_process(self) -> dict[str, float]:
        """`cpu_seconds` by process name (e.g. "smtpd", "cleanup", "lmtp", "dovecot-tm-main-…/lmtp").
        A process that ended meanwhile counts as "<its master>'s ended children" (Postfix's
        daemons end after max_use = 100 clients, cleanup's after 100 mails)."""
        sessions = {proc.pid for proc in self._procs}
        tick = os.sysconf("SC_CLK_TCK")
        totals: dict[str, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                name = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:  # ended meanwhile: its time goes to its master's children's time
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) in sessions:
                name = name.rsplit("/", 1)[-1] if name.startswith("/") else name
                for key, used in ((name, fields[11:13]), (f"{name}'s ended children", fields[13:15])):
                    if any(v != "0" for v in used):
                        totals[key] = totals.get(key, 0.0) + sum(int(v) for v in used) / tick
        return totals

    def wait_for_messages(self, address: str, *, count: int = 1, folder: str = "INBOX",
                          timeout: float = 10.0) -> dict[int, bytes]:
        """Poll until at least `count` mails are in the folder (SMTP delivery is asynchronous);
        then their copies. The polls only count (SELECT on one IMAP login): fetching every body
        at each poll cost Dovecot more CPU than delivering them (bench/outbound_send.py counts it)."""
        deadline = time.monotonic() + timeout
        conn = self._imap(address)
        try:
            while True:
                typ, data = conn.select(_imap_quote(folder), readonly=True)
                present = int(data[0] or 0) if typ == "OK" else 0
                if present >= count:
                    break
                if time.monotonic() > deadline:
                    raise MailServersError(
                        f"{address}: {present} of {count} mails arrived in {timeout}s; "
                        f"see {self.root / 'logs' / 'postfix.log'}")
                time.sleep(0.05)
        finally:
            conn.logout()
        return self.server_copies(address, folder=folder)

    def wait_for_queue_empty(self, *, timeout: float = 10.0) -> None:
        """Poll until Postfix's queue holds no mail: every mail it accepted (an SMTP client's
        250 comes after cleanup wrote the queue file) was delivered, discarded or bounced.
        With postfix_delivery="discard" this is the end of delivery. Reads the queue
        directories (as root) rather than asking Postfix, which would cost it CPU."""
        queue = self.root / "postfix" / "queue"
        deadline = time.monotonic() + timeout
        while True:
            queued = sum(1 for sub in _POSTFIX_QUEUES for _ in _files_under(queue / sub))
            if not queued:
                return
            if time.monotonic() > deadline:
                raise MailServersError(f"{queued} mails still in Postfix's queue after {timeout}s; "
                                       f"see {self.root / 'logs' / 'postfix.log'}")
            time.sleep(0.02)

    # ----- settings for the product's clients
    def mail_settings(self, *, protocol: str, protection: str, authentication: str, username: str,
                      listener: str | None = None, **overrides):
        from connections.mail import MailSettings

        key = listener or _DEFAULT_LISTENER[(protocol, protection)]
        values = dict(
            protocol=protocol, host=self.host, port=self.ports[key], protection=protection,
            authentication=authentication, username=username, trusted_ca=self.ca_pem, timeout=10.0,
        )
        values.update(overrides)
        return MailSettings(**values)

    def dovecot_groups(self) -> list[int]:
        """The process group of each Dovecot master (the group id is its pid), for the
        benchmarks' CPU accounting."""
        return [p.pid for p in self._procs if p.args[0].endswith("/dovecot")]

    # ----- lifecycle
    def stop(self, *, keep_files: bool = False) -> None:
        """Stop every daemon this run started (by pid) and remove the temp directory."""
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=5)
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # A test server holds nothing worth a graceful shutdown: give it a second, then kill
        # the whole process group of each master (its children; the group id is its pid).
        deadline = time.monotonic() + 1.0
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self._procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(timeout=5)
        self._procs.clear()
        if not keep_files and os.environ.get("TM_KEEP_MAILSERVERS") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


def _ascii_lower(s: str) -> str:
    # Dovecot's %Lu lowercases ASCII letters only.
    return "".join(c.lower() if c.isascii() else c for c in s)


def _imap_quote(s: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- configs
def _dovecot_conf(root: Path, name: str, cert: tuple[Path, Path, str] | None,
                  listeners: dict[str, tuple[str, bool]], ports: dict[str, int], oauth2_port: int = 0,
                  extra: str = "") -> Path:
    base = root / "dovecot" / name
    base.mkdir(parents=True)
    # OAuth2 (XOAUTH2/OAUTHBEARER): tokens introspected (RFC 7662) at tests/oauth2_server.py, which
    # takes client_secret_post as Dovecot 2.3 sends it (no user:password@ in the URL).
    oauth2_args = root / "etc" / "dovecot-oauth2.conf.ext"
    oauth2_args.write_text(
        f"introspection_mode = post\nintrospection_url = http://{HOST}:{oauth2_port}/introspect\n"
        "client_id = dovecot\nclient_secret = dovecot-introspection-secret\n"
        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
    )
    mail_uid = pwd.getpwnam("mail").pw_uid
    services = []
    for service in ("imap", "pop3"):
        inet = "".join(
            f"  inet_listener {key} {{\n    address = {HOST}\n    port = {ports[key]}\n"
            f"    ssl = {'yes' if implicit else 'no'}\n  }}\n"
            for key, (svc, implicit) in listeners.items() if svc == service
        )
        # Unused protocols still get a (disabled) default listener otherwise.
        defaults = f"  inet_listener {service} {{\n    port = 0\n  }}\n  inet_listener {service}s {{\n    port = 0\n  }}\n"
        services.append(f"service {service}-login {{\n{defaults}{inet}}}\n")
    if cert is not None:
        ssl_conf = f"ssl = yes\nssl_cert = <{cert[0]}\nssl_key = <{cert[1]}\nssl_min_protocol = TLSv1.2\n"
        if os.path.exists("/usr/share/dovecot/dh.pem"):
            ssl_conf += "ssl_dh = </usr/share/dovecot/dh.pem\n"
    else:
        ssl_conf = "ssl = no\n"
    lmtp = ""
    if name == "main":
        lmtp = (
            "service lmtp {\n  unix_listener lmtp {\n    mode = 0666\n  }\n}\n"
            "service auth {\n  unix_listener auth-postfix {\n    mode = 0666\n  }\n}\n"
            f"protocol lmtp {{\n  postmaster_address = postmaster@{DOMAIN}\n}}\n"
        )
    conf = f"""# generated by tests/mailservers.py
instance_name = tm-{name}-{os.getpid()}
base_dir = {base}/run
state_dir = {base}/state
log_path = {root}/logs/dovecot-{name}.log
listen = {HOST}
protocols = imap pop3{' lmtp' if name == 'main' else ''}
{ssl_conf}
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 apop xoauth2 oauthbearer
auth_username_chars =
auth_failure_delay = 0
auth_cache_size = 0
# Many failed logins from 127.0.0.1 are the point of the tests: no growing penalty delay.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login cram-md5 apop
  args = {root}/etc/users/%Lu
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_args}
}}
userdb {{
  driver = passwd-file
  args = {root}/etc/users/%Lu
  default_fields = home={root}/mail/%Lu
}}
mail_uid = {mail_uid}
mail_gid = {grp.getgrnam('mail').gr_gid}
first_valid_uid = {mail_uid}
first_valid_gid = {grp.getgrnam('mail').gr_gid}
mail_location = maildir:~/Maildir
default_login_user = dovenull
default_internal_user = dovecot
login_greeting = TenantMail test Dovecot ({name}) ready.
shutdown_clients = yes
# No stats: on shutdown a login process would wait seconds for the (already stopped) stats service.
stats_writer_socket_path =
{_DOVECOT_EXTRA.get(name, "")}{''.join(services)}{lmtp}{extra}"""
    path = root / "etc" / f"dovecot-{name}.conf"
    path.write_text(conf)
    return path


# Where a mail waits in Postfix's queue until it is delivered (or discarded, or bounced).
_POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")
# postfix_delivery of start_mail_servers: the transport of example.test's mailboxes.
_POSTFIX_DELIVERY = {
    "lmtp": "lmtp:unix:{dovecot_run}/lmtp",
    # Postfix's own discard(8) transport: queued, then dropped as "delivered" (and logged so).
    "discard": "discard:mailbox delivery runs elsewhere (benchmark)",
}


def _files_under(directory: Path) -> Iterator[str]:
    """Names of the files below `directory` (Postfix hashes queue files into subdirectories)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files_under(Path(entry.path))
        else:
            yield entry.name


def _postfix_conf(root: Path, certs: dict[str, tuple[Path, Path, str]], ports: dict[str, int],
                  delivery: str = "lmtp") -> Path:
    etc, queue, data = root / "postfix" / "etc", root / "postfix" / "queue", root / "postfix" / "data"
    etc.mkdir(parents=True)
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    postdrop_gid = grp.getgrnam("postdrop").gr_gid
    # The queue layout `postfix start` would create; the master daemon itself expects it.
    queue.mkdir(parents=True)
    os.chown(queue, 0, 0)
    queue.chmod(0o755)
    for sub in ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
                "private", "saved", "trace"):
        (queue / sub).mkdir()
        os.chown(queue / sub, postfix_uid, -1)
        (queue / sub).chmod(0o700)
    for sub, mode in (("public", 0o710), ("maildrop", 0o730)):
        (queue / sub).mkdir()
        os.chown(queue / sub, postfix_uid, postdrop_gid)
        (queue / sub).chmod(mode)
    (queue / "pid").mkdir(mode=0o755)
    data.mkdir(parents=True)
    os.chown(data, postfix_uid, -1)
    data.chmod(0o700)

    server_cert = certs["server"]
    dovecot_run = root / "dovecot" / "main" / "run"
    main_cf = f"""# generated by tests/mailservers.py
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = {POSTFIX_DAEMONS}
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/logs/postfix.log
maillog_file_prefixes = {root}/logs
inet_interfaces = {HOST}
inet_protocols = ipv4
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
mynetworks = {HOST}/32
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP TenantMail test Postfix
biff = no
# Nothing ever leaves this machine.
default_transport = error:outside delivery is disabled in tests
relay_transport = error:outside delivery is disabled in tests
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = hash:{root}/etc/vmailbox
virtual_transport = {_POSTFIX_DELIVERY[delivery].format(dovecot_run=dovecot_run)}
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_sasl_type = dovecot
smtpd_sasl_path = {dovecot_run}/auth-postfix
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options = noanonymous
smtpd_tls_cert_file = {server_cert[0]}
smtpd_tls_key_file = {server_cert[1]}
smtpd_tls_security_level = may
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_loglevel = 0
smtputf8_enable = yes
message_size_limit = 52428800
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
lmtp_connect_timeout = 5s
# OAuth2 tokens in AUTH XOAUTH2 <initial response> are longer than the default 2048.
line_length_limit = 16384
"""
    (etc / "main.cf").write_text(main_cf)
    lines = []
    for key, (cert_name, options) in _POSTFIX_LISTENERS.items():
        opts = [f"syslog_name=postfix/{key}", *options]
        if cert_name is not None and cert_name != "server":
            opts += [f"smtpd_tls_cert_file={certs[cert_name][0]}", f"smtpd_tls_key_file={certs[cert_name][1]}"]
        lines.append(f"{HOST}:{ports[key]} inet n - n - - smtpd\n" + "".join(f"  -o {o}\n" for o in opts))
    lines.append("""cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
    (etc / "master.cf").write_text("".join(lines))
    return etc


# --------------------------------------------------------------------------- start
def _sweep_stale_dirs() -> None:
    """Remove temp dirs of earlier runs that were killed before they could clean up (none of
    their daemons alive any more). Dirs of live runs are left alone."""
    for old in Path("/tmp").glob("tmms-*"):
        try:
            if time.time() - old.stat().st_mtime < 600:
                continue
            pids = [int(p) for p in (old / "pids").read_text().split()]
        except (OSError, ValueError):
            continue  # no pid list (yet): not ours to judge
        if pids and all(not Path(f"/proc/{pid}").exists() for pid in pids):
            shutil.rmtree(old, ignore_errors=True)


def start_mail_servers(*, dovecot_extra: str = "", postfix_delivery: str = "lmtp") -> MailServers:
    """`dovecot_extra`: settings appended to every Dovecot instance's configuration (e.g. the
    benchmarks' higher process and client limits for 1,000 concurrent sessions).
    `postfix_delivery`: "lmtp" (into Dovecot, readable over IMAP/POP3: every test) or "discard"
    (Postfix's discard transport after the real queueing; benchmarks of SMTP submission)."""
    if postfix_delivery not in _POSTFIX_DELIVERY:
        raise ValueError(f"postfix_delivery must be one of {sorted(_POSTFIX_DELIVERY)}")
    ensure_installed()
    started = time.monotonic()
    _sweep_stale_dirs()
    root = Path(tempfile.mkdtemp(prefix="tmms-", dir="/tmp"))  # short: unix socket paths <= 107 bytes
    root.chmod(0o755)  # dovecot (mail user), postfix and dovenull must traverse it
    for sub in ("etc", "etc/users", "logs", "certs"):
        (root / sub).mkdir()
    mail_dir = root / "mail"
    mail_dir.mkdir()
    os.chown(mail_dir, pwd.getpwnam("mail").pw_uid, grp.getgrnam("mail").gr_gid)
    certs = _make_certificates(root / "certs")

    keys = [k for _, (_, ls) in _DOVECOT_INSTANCES.items() for k in ls] + list(_POSTFIX_LISTENERS)
    *free, oauth2_port = _free_ports(len(keys) + 1)
    ports = dict(zip(keys, free))
    servers = MailServers(
        host=HOST, domain=DOMAIN, ca_file=str(certs["ca"][0]), ca_pem=certs["ca"][2], ports=ports,
        certs={k: v[2] for k, v in certs.items() if k != "ca"}, root=root, oauth2_port=oauth2_port,
    )
    # PDEATHSIG fires when the *thread* that started a daemon ends: only the main thread lives as
    # long as the process. Started from another thread, the watchdog alone stops the daemons.
    die_with_parent = _die_with_parent if threading.current_thread() is threading.main_thread() else None
    try:
        postfix_etc = _postfix_conf(root, certs, ports, postfix_delivery)
        servers._write_user_files()  # empty user db + postfix map
        for name, (cert_name, listeners) in _DOVECOT_INSTANCES.items():
            conf = _dovecot_conf(root, name, certs[cert_name] if cert_name else None, listeners, ports, oauth2_port,
                                 dovecot_extra)
            with open(root / "logs" / f"dovecot-{name}.out.log", "wb") as out:
                servers._procs.append(subprocess.Popen(
                    ["/usr/sbin/dovecot", "-F", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
                ))
        # The master becomes its own session leader; its children share its process group.
        with open(root / "logs" / "postfix.out.log", "wb") as out:
            servers._procs.append(subprocess.Popen(
                [f"{POSTFIX_DAEMONS}/master", "-c", str(postfix_etc)], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
            ))
        atexit.register(servers.stop)  # also when the session ends without running finalizers
        (root / "pids").write_text(" ".join(str(p.pid) for p in servers._procs))
        servers._watchdog = _start_watchdog([p.pid for p in servers._procs])
        lmtp_socket = root / "dovecot" / "main" / "run" / "lmtp"
        _wait_until(lambda: lmtp_socket.exists(), 10, "Dovecot (main)", root / "logs")
        for key, port in ports.items():
            _wait_until(lambda: _port_open(port), 10, f"listener {key} (port {port})", root / "logs")
            for proc in servers._procs:
                if proc.poll() is not None:
                    raise MailServersError(f"{proc.args} exited with {proc.returncode}; logs in {root}/logs")
    except BaseException:
        servers.stop(keep_files=True)  # the logs explain why
        raise
    servers.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return servers


# --------------------------------------------------------------------------- pytest fixtures
@pytest.fixture(scope="session")
def mail_servers() -> Iterator[MailServers]:
    servers = start_mail_servers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def mailbox(mail_servers: MailServers) -> tuple[str, str]:
    """A fresh, empty mailbox user: (address, password)."""
    return mail_servers.add_user()
