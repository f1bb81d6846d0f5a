"""A small inline SVG of a connection: who asks (R, the request) and where the mail flows.

Both directions start with the tenant asking the server (request arrow R, tenant -> server).
The mail (data) flows tenant -> server for outbound (SMTP) and server -> tenant for inbound
(IMAP/POP3 polls). Every label is escaped: host names and tenant names are operator input.
"""
from __future__ import annotations

from django.utils.html import escape

from ...mail.settings import default_port
from ...models import InboundConnection, OutboundConnection, Protection

WIDTH, HEIGHT = 600, 190
BOX_W, BOX_H, BOX_Y = 170, 96, 44
LEFT_X, RIGHT_X = 10, WIDTH - 10 - BOX_W
ARROW_X1, ARROW_X2 = LEFT_X + BOX_W, RIGHT_X  # the gap the arrows cross
REQUEST_Y, DATA_Y = BOX_Y + 30, BOX_Y + 70


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def diagram_svg(*, connection: InboundConnection | OutboundConnection) -> str:
    """The SVG markup (a string, safe to embed: all labels escaped)."""
    inbound = isinstance(connection, InboundConnection)
    protocol = connection.protocol if inbound else "smtp"
    port = connection.port or default_port(protocol, connection.protection)
    protection = Protection(connection.protection).label if connection.protection in Protection.values \
        else connection.protection
    host_port = f"{connection.host}:{port}"
    tenant_name = connection.tenant.name if connection.tenant_id else ""
    uid = f"tm-{'in' if inbound else 'out'}-{connection.pk or 'new'}"
    direction = "inbound" if inbound else "outbound"
    # The operator's words first, the SAP adapter name after (issue 20).
    caption = ("Inbound: TenantMail polls IMAP/POP3 (mail sender adapter)" if inbound
               else "Outbound: TenantMail sends over SMTP (mail receiver adapter)")
    data_from, data_to = ("server", "tenant") if inbound else ("tenant", "server")
    dx1, dx2 = (ARROW_X2, ARROW_X1) if inbound else (ARROW_X1, ARROW_X2)
    mid = (ARROW_X1 + ARROW_X2) // 2
    title = (
        f"{direction.capitalize()} connection {connection.name}: tenant {tenant_name} sends the request to "
        f"{host_port} over {protocol.upper()} ({protection}); mail flows {data_from} to {data_to}."
    )
    oauth2 = connection.authentication == "oauth2"
    if oauth2:
        title += " It logs in with an OAuth2 access token from the credential's provider."
    e = escape
    return f"""<svg xmlns="http://www.w3.org/2000/svg" class="tm-diagram" data-direction="{direction}" \
viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" style="max-width:100%;height:auto" role="img" aria-labelledby="{uid}-title">
<title id="{uid}-title">{e(title)}</title>
<defs>
<marker id="{uid}-head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
<path d="M0,0 L10,5 L0,10 z" fill="currentColor"/>
</marker>
</defs>
<g font-family="sans-serif" font-size="12" fill="none" stroke="currentColor" style="color:#264b5d">
<rect class="box tenant" data-role="tenant" x="{LEFT_X}" y="{BOX_Y}" width="{BOX_W}" height="{BOX_H}" rx="6" \
fill="#e8f1f5" stroke="#264b5d"/>
<rect class="box server" data-role="server" x="{RIGHT_X}" y="{BOX_Y}" width="{BOX_W}" height="{BOX_H}" rx="6" \
fill="#f5f1e8" stroke="#5d4a26"/>
<line class="arrow request" data-from="tenant" data-to="server" x1="{ARROW_X1}" y1="{REQUEST_Y}" x2="{ARROW_X2}" \
y2="{REQUEST_Y}" stroke-width="2" marker-end="url(#{uid}-head)"/>
<circle cx="{mid}" cy="{REQUEST_Y}" r="10" fill="#fff" stroke-width="1.5"/>
<line class="arrow data" data-from="{data_from}" data-to="{data_to}" x1="{dx1}" y1="{DATA_Y}" x2="{dx2}" \
y2="{DATA_Y}" stroke-width="2" stroke-dasharray="6 3" marker-end="url(#{uid}-head)"/>
</g>
<g font-family="sans-serif" font-size="12" fill="#222" text-anchor="middle">
<text class="request-mark" x="{mid}" y="{REQUEST_Y + 4}" font-weight="bold">R</text>
<text x="{LEFT_X + BOX_W // 2}" y="{BOX_Y + 22}" font-weight="bold">Tenant</text>
<text class="label tenant-name" x="{LEFT_X + BOX_W // 2}" y="{BOX_Y + 42}">{e(_clip(tenant_name, 24))}</text>
<text x="{LEFT_X + BOX_W // 2}" y="{BOX_Y + 62}" font-size="10">TenantMail</text>
{f'<text class="label oauth2" x="{LEFT_X + BOX_W // 2}" y="{BOX_Y + 80}" font-size="10">login: OAuth2 token</text>' if oauth2 else ""}
<text class="label caption" x="{WIDTH // 2}" y="{BOX_Y + BOX_H + 26}" font-size="12">{caption}</text>
<text x="{RIGHT_X + BOX_W // 2}" y="{BOX_Y + 22}" font-weight="bold">Mail server</text>
<text class="label host" x="{RIGHT_X + BOX_W // 2}" y="{BOX_Y + 42}">{e(_clip(host_port, 26))}</text>
<text class="label protocol" x="{mid}" y="{BOX_Y - 22}" font-weight="bold">{e(protocol.upper())}</text>
<text class="label protection" x="{mid}" y="{BOX_Y - 6}">{e(protection)}</text>
<text x="{mid}" y="{REQUEST_Y - 14}" font-size="10">request</text>
<text x="{mid}" y="{DATA_Y + 18}" font-size="10">mail ({e(data_from)} → {e(data_to)})</text>
</g>
</svg>"""
