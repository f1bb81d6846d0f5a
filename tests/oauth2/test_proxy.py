"""OAuth2 token requests of a proxied connection go through its proxy (real microsocks and
tinyproxy, the real test authorization server, the real Dovecot); a dead or blocked proxy is a
clear error of the token step; authorizations from the admin use a proxy only when all the
artifact's connections share it."""
from __future__ import annotations

import uuid

import pytest

from connections.models import PollOutcome, ProxyProfile, UserCredential
from connections.services.inbound import poll as inbound_poll
from connections.services.setup import credentials as credential_service
from connections.services.setup.connectivity import run_connectivity_test
from connections.services.oauth2 import providers, proxying

pytestmark = [pytest.mark.mailservers, pytest.mark.django_db(transaction=True)]


def _login(tenant, proxy) -> UserCredential:
    cred = UserCredential(tenant=tenant, name=f"proxy-{uuid.uuid4().hex[:8]}", username=proxy.username)
    credential_service.save_artifact(credential=cred, password=proxy.password)
    return credential_service.deploy(credential_id=cred.pk, user=None)


def _inline(proxy, login=None, *, host=None, port=None) -> dict:
    return dict(proxy_type=proxy.type, proxy_host=host or proxy.host, proxy_port=port or proxy.port,
                proxy_credential_name=login.name if login else "")


def _requests_to(proxy, server) -> int:
    """Lines of the proxy's own log showing a request to the authorization server: SOCKS5
    tunnels to its port (microsocks), plain-HTTP forwards of its URLs (tinyproxy)."""
    if proxy.type == "socks5":
        return proxy.tunnels_to(server.port)
    return sum(1 for line in proxy.log().splitlines() if "Request" in line and f"{server.url}/" in line)


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_token_request_of_a_proxied_poll_goes_through_the_proxy(mail_servers, mailbox, tenant, make_oauth2_credential,
                                                               make_oauth2_connection, fresh_oauth2, socks_proxy,
                                                               http_proxy, kind):
    proxy = socks_proxy if kind == "socks5" else http_proxy
    address, _ = mailbox
    mail_servers.append(address, [b"Subject: proxied token\r\n\r\nbody\r\n"])
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap", **_inline(proxy, _login(tenant, proxy)))
    tokens_before, tunnels_before = _requests_to(proxy, fresh_oauth2), proxy.tunnels_to(connection.port)
    grants_before = fresh_oauth2.token_requests["client_credentials"]
    result = inbound_poll.poll(connection_id=connection.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert result.stored == 1
    assert fresh_oauth2.token_requests["client_credentials"] == grants_before + 1
    assert _requests_to(proxy, fresh_oauth2) == tokens_before + 1  # the token request, in the proxy's log
    assert proxy.tunnels_to(connection.port) == tunnels_before + 1  # and the IMAP session
    assert proxy.password not in (result.error or "")


def test_discovery_and_refresh_go_through_the_proxy(mail_servers, mailbox, tenant, make_oauth2_credential,
                                                    make_oauth2_connection, fresh_oauth2, socks_proxy):
    address, _ = mailbox
    cred, client = make_oauth2_credential(address, kind="oauth2_authorization_code", deploy=False)
    granted = fresh_oauth2.grant_refresh_token(client, user=address)
    UserCredential.objects.filter(pk=cred.pk).update(refresh_token=granted)
    cred = credential_service.deploy(credential_id=cred.pk, user=None, source="test")
    providers._DISCOVERY.pop(fresh_oauth2.url, None)  # read the issuer's document now, through the proxy
    connection = make_oauth2_connection(cred, protocol="imap", **_inline(socks_proxy, _login(tenant, socks_proxy)))
    before = _requests_to(socks_proxy, fresh_oauth2)
    refreshes = fresh_oauth2.token_requests["refresh_token"]
    result = inbound_poll.poll(connection_id=connection.pk, trigger="test")
    assert result.outcome == PollOutcome.SUCCESS, result.error
    assert fresh_oauth2.token_requests["refresh_token"] == refreshes + 1
    assert _requests_to(socks_proxy, fresh_oauth2) == before + 2  # discovery + refresh


@pytest.mark.parametrize("kind", ["socks5", "http"])
def test_dead_proxy_is_a_clear_token_step_error(mailbox, tenant, make_oauth2_credential, make_oauth2_connection,
                                                fresh_oauth2, socks_proxy, http_proxy, dead_proxy_port, kind):
    proxy = socks_proxy if kind == "socks5" else http_proxy
    address, _ = mailbox
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap", **_inline(proxy, port=dead_proxy_port))
    grants_before = fresh_oauth2.token_requests["client_credentials"]
    result = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    step = next(s for s in result.steps if s["name"] == "token")
    assert not result.ok and not step["ok"]
    label = f"{kind.upper()} proxy at 127.0.0.1:{dead_proxy_port}"
    assert f"cannot reach the {label} for the token request (proxy unreachable)" in step["message"]
    assert "proxy unreachable" in step["hint"] and "token requests go through its proxy" in step["hint"]
    assert fresh_oauth2.token_requests["client_credentials"] == grants_before  # never reached the provider
    poll = inbound_poll.poll(connection_id=connection.pk, trigger="test")
    assert poll.outcome == PollOutcome.FAILED and f"cannot reach the {label}" in poll.error


def test_blocked_proxy_is_refused_before_the_token_request(mailbox, make_oauth2_credential, make_oauth2_connection,
                                                           fresh_oauth2):
    address, _ = mailbox
    cred, _client = make_oauth2_credential(address)
    connection = make_oauth2_connection(cred, protocol="imap", proxy_type="socks5", proxy_host="169.254.169.254",
                                        proxy_port=1080)
    result = run_connectivity_test(kind="inbound", connection_id=connection.pk)
    step = next(s for s in result.steps if s["name"] == "token")
    assert not step["ok"]
    assert ("the token request cannot use the proxy: connections to the SOCKS5 proxy 169.254.169.254 are not "
            "allowed: 169.254.169.254 is in the blocked network 169.254.0.0/16") in step["message"]


def test_authorization_uses_a_proxy_only_when_all_connections_share_it(tenant, make_oauth2_credential,
                                                                       make_oauth2_connection, socks_proxy,
                                                                       http_proxy):
    cred, _client = make_oauth2_credential("someone@example.org")
    assert proxying.for_credential(cred) is None  # no connection: direct
    profile = ProxyProfile.objects.create(tenant=tenant, name="corp", type="socks5", host=socks_proxy.host,
                                          port=socks_proxy.port)
    first = make_oauth2_connection(cred, protocol="imap", proxy_profile=profile)
    make_oauth2_connection(cred, protocol="smtp", protection="starttls_mandatory", proxy_profile=profile)
    assert proxying.for_credential(cred).url() == f"socks5h://{socks_proxy.host}:{socks_proxy.port}"
    other = make_oauth2_connection(cred, protocol="pop3", protection="starttls_mandatory", **_inline(http_proxy))
    assert proxying.for_credential(cred) is None  # two different proxies: direct
    other.delete()
    make_oauth2_connection(cred, protocol="pop3", protection="starttls_mandatory")
    assert proxying.for_credential(cred) is None  # one direct connection: direct
    assert proxying.for_connection(first).url() == f"socks5h://{socks_proxy.host}:{socks_proxy.port}"


def test_device_authorization_goes_through_the_proxy_all_connections_share(mailbox, tenant, make_oauth2_credential,
                                                                           make_oauth2_connection, fresh_oauth2,
                                                                           socks_proxy):
    from connections.models import CredentialStatus
    from connections.services.oauth2 import authorize

    address, _ = mailbox
    cred, _client = make_oauth2_credential(address, kind="oauth2_authorization_code")
    make_oauth2_connection(cred, protocol="imap", **_inline(socks_proxy, _login(tenant, socks_proxy)))
    providers._DISCOVERY.pop(fresh_oauth2.url, None)
    before = _requests_to(socks_proxy, fresh_oauth2)
    flow = authorize.device_start(credential_id=cred.pk)
    assert _requests_to(socks_proxy, fresh_oauth2) == before + 2  # discovery + device code request
    fresh_oauth2.approve_device(flow.user_code, address)
    authorize.device_wait(credential_id=cred.pk, flow=flow, timeout=30, sleep=lambda _s: None)
    assert _requests_to(socks_proxy, fresh_oauth2) == before + 3  # + the token request
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.AUTHORIZED and cred.refresh_token
