"""Server settings of well-known mail providers, by the domain of the address.

Each preset: (IMAP host, port, protection), (SMTP host, port, protection). The user name is
the whole address for all of them. (Microsoft 365 and Gmail accounts often need OAuth2 or an
app password; the guided setup says so.)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Server:
    protocol: str  # imap | pop3 | smtp
    host: str
    port: int
    protection: str  # ssl_tls | starttls_mandatory | off
    authentication: str = "plain"
    username: str = "%EMAILADDRESS%"


@dataclass(frozen=True)
class Provider:
    name: str
    inbound: Server
    outbound: Server
    note: str = ""


def _p(name: str, imap: str, smtp: str, smtp_port: int = 587, note: str = "") -> Provider:
    return Provider(name, Server("imap", imap, 993, "ssl_tls"),
                    Server("smtp", smtp, smtp_port, "ssl_tls" if smtp_port == 465 else "starttls_mandatory"), note)


_APP_PASSWORD = "With two-step verification on, use an app password (or OAuth2 once it is available)."
MICROSOFT = _p("Microsoft 365 / Outlook.com", "outlook.office365.com", "smtp.office365.com",
               note="Microsoft may require OAuth2 (modern authentication) for IMAP and SMTP.")
GMAIL = _p("Gmail / Google Workspace", "imap.gmail.com", "smtp.gmail.com", note=_APP_PASSWORD)
YAHOO = _p("Yahoo Mail", "imap.mail.yahoo.com", "smtp.mail.yahoo.com", 465, note=_APP_PASSWORD)
ICLOUD = _p("iCloud Mail", "imap.mail.me.com", "smtp.mail.me.com", note="Use an app-specific password.")
FASTMAIL = _p("Fastmail", "imap.fastmail.com", "smtp.fastmail.com", 465, note="Use an app password.")
GMX = _p("GMX", "imap.gmx.net", "mail.gmx.net", note="Enable IMAP/POP3 access in the GMX settings first.")
WEBDE = _p("WEB.DE", "imap.web.de", "smtp.web.de", note="Enable IMAP/POP3 access in the WEB.DE settings first.")
AOL = _p("AOL Mail", "imap.aol.com", "smtp.aol.com", 465, note=_APP_PASSWORD)
ZOHO = _p("Zoho Mail", "imap.zoho.com", "smtp.zoho.com", 465)
MAILBOX_ORG = _p("mailbox.org", "imap.mailbox.org", "smtp.mailbox.org", 465)
POSTEO = _p("Posteo", "posteo.de", "posteo.de", 465)

BY_DOMAIN: dict[str, Provider] = {
    **dict.fromkeys(("outlook.com", "hotmail.com", "live.com", "msn.com", "office365.com", "onmicrosoft.com"),
                    MICROSOFT),
    **dict.fromkeys(("gmail.com", "googlemail.com"), GMAIL),
    **dict.fromkeys(("yahoo.com", "yahoo.de", "yahoo.co.uk", "yahoo.fr", "ymail.com"), YAHOO),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), ICLOUD),
    **dict.fromkeys(("fastmail.com", "fastmail.fm"), FASTMAIL),
    **dict.fromkeys(("gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.com"), GMX),
    "web.de": WEBDE,
    **dict.fromkeys(("aol.com", "aim.com"), AOL),
    **dict.fromkeys(("zoho.com", "zohomail.com"), ZOHO),
    "mailbox.org": MAILBOX_ORG,
    "posteo.de": POSTEO,
}


def for_domain(domain: str) -> Provider | None:
    domain = domain.lower().rstrip(".")
    if domain in BY_DOMAIN:
        return BY_DOMAIN[domain]
    if domain.endswith(".onmicrosoft.com"):
        return MICROSOFT
    return None
