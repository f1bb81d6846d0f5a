"""Configuration as code for proxies and push (issue 18): the contract's YAML, errors, prune."""
from __future__ import annotations

import pytest

from connections.models import InboundConnection, OutboundConnection, ProxyProfile
from connections.services.setup import config

pytestmark = pytest.mark.django_db

ENV = {"ACME_MAILBOX_PASSWORD": "pw-1", "ACME_PROXY_PASSWORD": "pw-proxy"}

# The contract, filled in with what a real file needs.
CONTRACT = """
tenants:
  - slug: acme
    name: ACME
    credentials:
      - {name: acme-mailbox, user: orders@acme.example, password_env: ACME_MAILBOX_PASSWORD, deploy: true}
      - {name: proxy-login, user: tm, password_env: ACME_PROXY_PASSWORD, deploy: true}
    proxies:
      - name: corp-socks
        type: socks5              # socks5 | http
        host: proxy.acme.example
        port: 1080
        credential: proxy-login   # optional, a User Credentials artifact
    outbound:
      - {name: smtp, host: smtp.acme.example, credential: acme-mailbox, from: orders@acme.example, proxy: corp-socks}
    inbound:
      - name: orders
        host: imap.acme.example
        credential: acme-mailbox
        push: true
        proxy: corp-socks         # a profile name ...
      - name: support
        host: imap.acme.example
        credential: acme-mailbox
        proxy: {type: http, host: 10.0.0.5, port: 3128}   # ... or inline
"""


def apply_text(text: str, **kw) -> config.Plan:
    return config.apply(config.load(text), environ=ENV, **kw)


def errors_of(text: str) -> list[str]:
    with pytest.raises(config.ConfigValidationError) as err:
        apply_text(text)
    return err.value.errors


@pytest.mark.smoke
def test_the_contract_applies_exports_and_round_trips():
    plan = apply_text(CONTRACT)
    assert "create proxy acme/corp-socks" in str(plan)
    profile = ProxyProfile.objects.get(name="corp-socks")
    assert (profile.type, profile.host, profile.port, profile.credential_name) == (
        "socks5", "proxy.acme.example", 1080, "proxy-login")
    orders = InboundConnection.objects.get(name="orders")
    assert orders.push is True and orders.proxy_profile == profile and orders.proxy_type == ""
    support = InboundConnection.objects.get(name="support")
    assert support.proxy_profile is None and (support.proxy_type, support.proxy_host, support.proxy_port) == (
        "http", "10.0.0.5", 3128)
    assert OutboundConnection.objects.get(name="smtp").proxy_profile == profile
    assert apply_text(CONTRACT).empty  # applying again changes nothing
    exported = config.export()["tenants"][0]
    assert exported["proxies"] == [{"name": "corp-socks", "type": "socks5", "host": "proxy.acme.example",
                                    "port": 1080, "credential": "proxy-login"}]
    by_name = {i["name"]: i for i in exported["inbound"]}
    assert by_name["orders"]["proxy"] == "corp-socks" and by_name["orders"]["push"] is True
    assert by_name["support"]["proxy"] == {"type": "http", "host": "10.0.0.5", "port": 3128}
    assert apply_text(config.dump(config.export())).empty


def test_changing_and_removing_a_proxy_is_planned_and_applied():
    apply_text(CONTRACT)
    changed = CONTRACT.replace("proxy: corp-socks         # a profile name ...", "proxy: {type: socks5, host: s, port: 1}")
    plan = apply_text(changed)
    assert "update inbound acme/orders: proxy: 'corp-socks' -> {type: 'socks5', host: 's', port: 1}" in str(plan)
    orders = InboundConnection.objects.get(name="orders")
    assert orders.proxy_profile is None and orders.proxy_type == "socks5"
    plan = apply_text(changed.replace("        proxy: {type: http, host: 10.0.0.5, port: 3128}   # ... or inline\n", ""))
    assert "update inbound acme/support: proxy: {type: 'http', host: '10.0.0.5', port: 3128} -> null" in str(plan)
    assert InboundConnection.objects.get(name="support").proxy_type == ""


def test_prune_deletes_an_unused_profile():
    apply_text(CONTRACT)
    text = CONTRACT.replace("proxy: corp-socks         # a profile name ...", "proxy: null").replace(
        "from: orders@acme.example, proxy: corp-socks}", "from: orders@acme.example}")
    text = text.replace("    proxies:\n      - name: corp-socks\n        type: socks5              # socks5 | http\n"
                        "        host: proxy.acme.example\n        port: 1080\n"
                        "        credential: proxy-login   # optional, a User Credentials artifact\n", "    proxies: []\n")
    plan = apply_text(text, prune=True)
    assert "delete proxy acme/corp-socks" in str(plan)
    assert not ProxyProfile.objects.exists()


def test_errors_have_their_place():
    bad = CONTRACT.replace("type: socks5              # socks5 | http", "type: socks4").replace(
        "proxy: corp-socks         # a profile name ...", "proxy: nowhere").replace(
        "port: 3128}", "port: 99999}")
    errors = errors_of(bad)
    assert "tenants[0].proxies[0].type: 'socks4' is not one of socks5, http" in errors
    assert any(e.startswith("tenants[0].inbound[0].proxy: no proxy named 'nowhere' in this tenant") for e in errors)
    assert "tenants[0].inbound[1].proxy.port: 99999 is not a port (1 to 65535)" in errors


def test_push_is_for_imap_only():
    text = CONTRACT.replace("        push: true\n", "        protocol: pop3\n        post_processing: keep\n        push: true\n")
    assert "tenants[0].inbound[0].push: applies to imap only; remove it for a pop3 connection" in errors_of(text)
