"""The connectivity test, polls and sends through the connection's proxy (profile or inline),
against real proxies (microsocks, tinyproxy) and the real Dovecot/Postfix."""
from __future__ import annotations

import pytest

from connections.models import ProxyProfile
from connections.services.setup.connectivity import run_connectivity_test
from connections.services.proxies import proxy_url_for

pytestmark = [pytest.mark.django_db, pytest.mark.mailservers]


def _steps(result) -> dict:
    return {s["name"]: s for s in result.steps}


@pytest.mark.parametrize("protocol,protection", [("imap", "ssl_tls"), ("pop3", "starttls_mandatory"),
                                                 ("smtp", "starttls_mandatory")])
def test_connectivity_test_through_a_socks5_profile(make_connection, make_credential, tenant, socks_proxy,
                                                    protocol, protection):
    login = make_credential(socks_proxy.username, socks_proxy.password, name="proxy-login")
    profile = ProxyProfile.objects.create(tenant=tenant, name="corp-socks", type="socks5", host=socks_proxy.host,
                                          port=socks_proxy.port, credential_name=login.name)
    conn = make_connection(protocol, protection, "plain", proxy_profile=profile)
    before = socks_proxy.tunnels_to(conn.port)
    result = run_connectivity_test(kind="outbound" if protocol == "smtp" else "inbound", connection_id=conn.pk)
    assert result.ok, result.report
    steps = _steps(result)
    assert "dns" not in steps and "tcp" not in steps
    proxy = steps["proxy"]
    assert proxy["ok"] and proxy["detail"]["profile"] == "corp-socks" and proxy["detail"]["type"] == "socks5"
    assert proxy["detail"]["user"] == socks_proxy.username and proxy["duration_ms"] >= 0
    assert socks_proxy.tunnels_to(conn.port) == before + 1
    assert socks_proxy.password not in str(result.report)


def test_connectivity_test_through_an_inline_http_proxy_and_its_failures(make_connection, make_credential,
                                                                          http_proxy, dead_proxy_port):
    login = make_credential(http_proxy.username, http_proxy.password)
    conn = make_connection("imap", "ssl_tls", "plain", proxy_type="http", proxy_host=http_proxy.host,
                           proxy_port=http_proxy.port, proxy_credential_name=login.name)
    before = http_proxy.tunnels_to(conn.port)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert result.ok, result.report
    assert http_proxy.tunnels_to(conn.port) == before + 1
    assert proxy_url_for(conn) == f"http://{http_proxy.username}@{http_proxy.host}:{http_proxy.port}"

    wrong = make_credential(http_proxy.username, "wrong-proxy-pw")
    conn.proxy_credential_name = wrong.name
    conn.save()
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    step = _steps(result)["proxy"]
    assert not result.ok and not step["ok"] and "proxy authentication failed" in step["hint"]
    assert "wrong-proxy-pw" not in str(result.report)

    conn.proxy_port = dead_proxy_port
    conn.save()
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    step = _steps(result)["proxy"]
    assert not step["ok"] and "cannot reach the HTTP proxy" in step["message"] and "proxy unreachable" in step["hint"]


@pytest.mark.django_db(transaction=True)
def test_a_poll_goes_through_the_proxy(make_connection, make_credential, mail_servers, socks_proxy):
    from connections.models import StoredMessage
    from connections.services.inbound.poll import poll

    address, password = mail_servers.add_user()
    mail_servers.append(address, [b"Subject: proxied poll\r\nMessage-ID: <p1@x>\r\n\r\nbody\r\n"])
    login = make_credential(socks_proxy.username, socks_proxy.password)
    conn = make_connection("imap", "ssl_tls", "plain", address=address, password=password, proxy_type="socks5",
                           proxy_host=socks_proxy.host, proxy_port=socks_proxy.port,
                           proxy_credential_name=login.name)
    before = socks_proxy.tunnels_to(conn.port)
    result = poll(connection_id=conn.pk, trigger="manual")
    assert result.outcome == "success", result.error
    assert StoredMessage.objects.get(connection=conn).subject == "proxied poll"
    assert socks_proxy.tunnels_to(conn.port) == before + 1


def test_a_connection_may_not_use_another_tenants_proxy_profile(make_connection, tenant):
    from django.core.exceptions import ValidationError

    from connections.errors import ConfigurationError
    from connections.models import Tenant
    from connections.services.proxies import proxy_settings_for

    other = Tenant.objects.create(name="Other", slug="other-proxy")
    foreign = ProxyProfile.objects.create(tenant=other, name="theirs", type="socks5", host="10.9.9.9", port=1080)
    conn = make_connection("imap", "ssl_tls", "plain")
    conn.proxy_profile = foreign
    with pytest.raises(ValidationError) as err:
        conn.full_clean()
    assert "proxy_profile" in err.value.message_dict
    with pytest.raises(ConfigurationError):  # and at run time, should a row say so anyway
        proxy_settings_for(conn)


@pytest.mark.django_db(transaction=True)
def test_an_outbox_send_goes_through_the_proxy(make_connection, make_credential, mail_servers, http_proxy):
    from connections.models import OutboxMessage, OutboxStatus
    from connections.services.outbound import enqueue, sending

    address, password = mail_servers.add_user()
    login = make_credential(http_proxy.username, http_proxy.password)
    conn = make_connection("smtp", "starttls_mandatory", "plain", address=address, password=password,
                           proxy_type="http", proxy_host=http_proxy.host, proxy_port=http_proxy.port,
                           proxy_credential_name=login.name)
    message = enqueue.enqueue(connection_id=conn.pk, to=[address], subject="via proxy", text="hello")
    before = http_proxy.tunnels_to(conn.port)
    sending.send_due(connection_id=conn.pk)
    assert OutboxMessage.objects.get(pk=getattr(message, "pk", message)).status == OutboxStatus.SENT
    assert http_proxy.tunnels_to(conn.port) == before + 1
    mail_servers.wait_for_messages(address, count=1)


def test_a_proxy_in_a_blocked_network_is_refused_before_connecting(make_connection, make_credential):
    conn = make_connection("imap", "ssl_tls", "plain", proxy_type="socks5", proxy_host="169.254.169.254",
                           proxy_port=1080, timeout=300)
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    steps = _steps(result)
    step = steps["proxy"]
    assert not result.ok and not step["ok"] and "tcp" not in steps and "greeting" not in steps
    assert step["message"] == ("connections to the SOCKS5 proxy 169.254.169.254 are not allowed: 169.254.169.254 "
                               "is in the blocked network 169.254.0.0/16 (TENANTMAIL_BLOCKED_NETWORKS); nothing was "
                               "sent to port 1080")
    assert "proxy's own address" in step["hint"]


def test_a_listed_proxy_network_refuses_the_real_proxy(make_connection, make_credential, socks_proxy, settings):
    login = make_credential(socks_proxy.username, socks_proxy.password)
    conn = make_connection("imap", "ssl_tls", "plain", proxy_type="socks5", proxy_host="localhost",
                           proxy_port=socks_proxy.port, proxy_credential_name=login.name)
    before = socks_proxy.log()
    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16,127.0.0.0/8,::1/128"
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    step = _steps(result)["proxy"]
    assert not step["ok"] and "connections to the SOCKS5 proxy localhost (" in step["message"]
    assert "is in the blocked network" in step["message"]
    assert socks_proxy.log() == before  # the proxy never saw a client
    settings.TENANTMAIL_BLOCKED_NETWORKS = "169.254.0.0/16"
    result = run_connectivity_test(kind="inbound", connection_id=conn.pk)
    assert result.ok, result.report
    assert _steps(result)["proxy"]["detail"]["proxy_addresses"]
