"""A real OAuth2 authorization server for the tests (Authlib's server side on Flask), on loopback.

Fixture ``oauth2_server`` (session) -> :class:`AuthServer`, listening on the port that
``tests/mailservers.py`` reserved for it (``mail_servers.oauth2_port``): the Dovecot instances
introspect tokens there (RFC 7662, ``client_secret_post`` as Dovecot 2.3 sends it).

Grants: client_credentials, authorization_code (+ PKCE S256, a consent page whose "Approve"
button grants), refresh_token (rotated on every use; the old one stops working), device code
(RFC 8628; ``approve_device(user_code, user)`` is what the user does on the verification page). Endpoints:
``/token``, ``/authorize``, ``/introspect``, ``/revoke``, ``/.well-known/openid-configuration``.

Test switches (attributes, thread-safe enough for tests):
``expires_in``      lifetime of new access tokens in seconds (default 3600).
``token_status``    None, or an HTTP status (e.g. 503) that ``/token`` answers with ("provider down").
``token_bytes``     random bytes in new access tokens (default 32; 1500 gives a ~2 KB token).
``introspection_status``  None, or an HTTP status ``/introspect`` answers with (Dovecot cannot check).
``token_delay``     seconds ``/token`` sleeps before answering (to widen races).
Methods: ``add_client(...)``, ``revoke_all(client_id=None)`` (access and refresh tokens: the next
refresh gets ``invalid_grant``, the next login is refused), ``token_requests`` (count per grant type),
``unreachable_url(path)`` (a loopback URL nobody listens on).
"""
from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint, DeviceCodeGrant
from flask import Flask, Response, jsonify, request
from markupsafe import escape
from werkzeug.serving import make_server

HOST = "127.0.0.1"
# The client Dovecot uses for introspection (tests/mailservers.py writes the same into its config).
INTROSPECTION_CLIENT_ID = "dovecot"
INTROSPECTION_CLIENT_SECRET = "dovecot-introspection-secret"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    user: str = ""  # the mailbox (introspected "username") of client-credentials tokens
    scope: str = "mail"
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: tuple[str, ...] = ("client_credentials", "authorization_code", "refresh_token", DEVICE_CODE_GRANT_TYPE)

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        # RFC 8252 §7.3: any port on loopback; else exact registration.
        if redirect_uri in self.redirect_uris:
            return True
        return redirect_uri.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:"))

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(self.client_secret, client_secret or "")

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


@dataclass
class Token:
    client_id: str
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    revoked: bool = False

    def check_client(self, client):
        return client.client_id in (self.client_id, INTROSPECTION_CLIENT_ID)

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.revoked

    def get_user(self):
        return self.user

    def get_client(self):
        return None


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float = field(default_factory=time.time)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


@dataclass
class Device:
    client_id: str
    scope: str
    user_code: str
    expires_at: float

    def get_client_id(self):
        return self.client_id

    def get_scope(self):
        return self.scope

    def get_user_code(self):
        return self.user_code

    def is_expired(self):
        return time.time() > self.expires_at


class AuthServer:
    def __init__(self, *, port: int) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.clients: dict[str, Client] = {}
        self.tokens: list[Token] = []
        self.codes: dict[str, Code] = {}
        self.devices: dict[str, Device] = {}  # device_code -> pending device authorization
        self.device_grants: dict[str, tuple[str, bool]] = {}  # user_code -> (user, approved)
        self.expires_in = 3600
        self.token_status: int | None = None
        self.token_delay = 0.0
        self.token_bytes = 32
        self.introspection_status: int | None = None
        self.token_requests: Counter = Counter()
        self.introspections = 0
        self._lock = threading.Lock()
        self.add_client(client_id=INTROSPECTION_CLIENT_ID, client_secret=INTROSPECTION_CLIENT_SECRET, grant_types=())
        self.app = self._make_app()
        self._server = make_server(HOST, port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth2-test-server", daemon=True)

    # ----- test API
    def start(self) -> "AuthServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def add_client(self, *, client_id: str | None = None, client_secret: str | None = None, user: str = "",
                   scope: str = "mail offline_access", redirect_uris: list[str] | None = None,
                   grant_types: tuple[str, ...] = ("client_credentials", "authorization_code", "refresh_token",
                                                   DEVICE_CODE_GRANT_TYPE)) -> Client:
        client = Client(client_id=client_id or f"client-{secrets.token_hex(4)}",
                        client_secret=client_secret or secrets.token_urlsafe(16), user=user, scope=scope,
                        redirect_uris=list(redirect_uris or []), grant_types=grant_types)
        self.clients[client.client_id] = client
        return client

    def revoke_all(self, client_id: str | None = None) -> None:
        with self._lock:
            for t in self.tokens:
                if client_id is None or t.client_id == client_id:
                    t.revoked = True

    def grant_refresh_token(self, client: Client, *, user: str, scope: str = "mail offline_access") -> str:
        """A refresh token as if the user had consented earlier (an imported grant)."""
        token = Token(client.client_id, user, scope, secrets.token_urlsafe(24), secrets.token_urlsafe(24), 0)
        with self._lock:
            self.tokens.append(token)
        return token.refresh_token

    def active_access_tokens(self, client_id: str) -> list[str]:
        return [t.access_token for t in self.tokens if t.client_id == client_id and not t.revoked and not t.is_expired()]

    def approve_device(self, user_code: str, user: str, *, approved: bool = True) -> None:
        """What the user does on the verification page (RFC 8628 §3.3)."""
        self.device_grants[user_code] = (user, approved)

    @staticmethod
    def unreachable_url(path: str = "/token") -> str:
        s = socket.socket()
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        return f"http://{HOST}:{port}{path}"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    # ----- the Flask app
    def _make_app(self) -> Flask:
        app = Flask("tenantmail-test-oauth2")
        app.config["OAUTH2_ERROR_URIS"] = []
        me = self

        def save_token(token_data, req):
            user = req.user if isinstance(req.user, str) else (req.client.user if req.client else "")
            token = Token(req.client.client_id, user or "", token_data.get("scope", ""), token_data["access_token"],
                          token_data.get("refresh_token"), int(token_data["expires_in"]))
            with me._lock:
                me.tokens.append(token)

        server = AuthorizationServer(app, query_client=self.clients.get, save_token=save_token)
        server.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **kw: secrets.token_urlsafe(me.token_bytes),
            refresh_token_generator=lambda **kw: secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: me.expires_in,
        ))

        class ClientCredentials(grants.ClientCredentialsGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        class AuthorizationCode(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                me.codes[code] = Code(code, req.client.client_id, req.payload.redirect_uri, req.payload.scope or "",
                                      req.user, req.payload.data.get("code_challenge"),
                                      req.payload.data.get("code_challenge_method"))

            def query_authorization_code(self, code, client):
                item = me.codes.get(code)
                if item and item.client_id == client.client_id and time.time() - item.issued_at < 300:
                    return item
                return None

            def delete_authorization_code(self, authorization_code):
                me.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class RefreshToken(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

            def authenticate_refresh_token(self, refresh_token):
                for t in me.tokens:
                    if t.refresh_token == refresh_token and not t.revoked:
                        return t
                return None

            def authenticate_user(self, credential):
                return credential.user

            def revoke_old_credential(self, credential):
                credential.revoked = True

        class Introspection(IntrospectionEndpoint):
            CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

            def query_token(self, token_string, token_type_hint):
                me.introspections += 1
                for t in me.tokens:
                    if t.access_token == token_string:
                        return t
                return None

            def introspect_token(self, token):
                return {"active": True, "client_id": token.client_id, "username": token.user,
                        "scope": token.scope, "token_type": "Bearer",
                        "exp": int(token.issued_at + token.expires_in), "iat": int(token.issued_at)}

            def check_permission(self, token, client, req):
                return client.client_id == INTROSPECTION_CLIENT_ID

        class Revocation(RevocationEndpoint):
            CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

            def query_token(self, token_string, token_type_hint):
                for t in me.tokens:
                    if token_string in (t.access_token, t.refresh_token):
                        return t
                return None

            def revoke_token(self, token, req):
                token.revoked = True

        class DeviceAuthorization(DeviceAuthorizationEndpoint):
            CLIENT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

            def get_verification_uri(self):
                return me.url + "/device"

            def save_device_credential(self, client_id, scope, data):
                me.devices[data["device_code"]] = Device(client_id, scope or "", data["user_code"],
                                                         time.time() + data["expires_in"])

        class DeviceCode(DeviceCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def query_device_credential(self, device_code):
                return me.devices.get(device_code)

            def query_user_grant(self, user_code):
                return me.device_grants.get(user_code)

            def should_slow_down(self, credential):
                return False

        server.register_endpoint(DeviceAuthorization)
        server.register_grant(DeviceCode)
        server.register_grant(ClientCredentials)
        server.register_grant(AuthorizationCode, [CodeChallenge(required=True)])
        server.register_grant(RefreshToken)
        server.register_endpoint(Introspection)
        server.register_endpoint(Revocation)

        @app.post("/token")
        def token():
            grant_type = request.form.get("grant_type", "")
            with me._lock:
                me.token_requests[grant_type] += 1
            if me.token_delay:
                time.sleep(me.token_delay)
            if me.token_status:
                return Response("provider down (test switch)", status=me.token_status)
            return server.create_token_response()

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            if request.method == "GET":
                try:
                    grant = server.get_consent_grant(end_user=None)
                except Exception as exc:  # noqa: BLE001 - shown on the page, like a real provider
                    return Response(f"invalid authorization request: {escape(str(exc))}", status=400)
                client = grant.client
                return (f"<!doctype html><title>Consent</title><h1>Test provider consent</h1>"
                        f"<p>{escape(client.client_id)} asks for {escape(request.args.get('scope', ''))}</p>"
                        f'<form method="post" action="/authorize?{escape(request.query_string.decode())}">'
                        f'<label>User <input name="user" value="{escape(client.user)}"></label>'
                        f'<button name="approve" value="yes" id="approve">Approve</button>'
                        f'<button name="approve" value="no" id="deny">Deny</button></form>')
            user = request.form.get("user", "")
            return server.create_authorization_response(grant_user=user if request.form.get("approve") == "yes" else None)

        @app.post("/device_authorization")
        def device_authorization():
            return server.create_endpoint_response("device_authorization")

        @app.post("/introspect")
        def introspect():
            if me.introspection_status:
                return Response("introspection down (test switch)", status=me.introspection_status)
            return server.create_endpoint_response("introspection")

        @app.post("/revoke")
        def revoke():
            return server.create_endpoint_response("revocation")

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(issuer=me.url, authorization_endpoint=me.url + "/authorize", token_endpoint=me.url + "/token",
                           introspection_endpoint=me.url + "/introspect",
                           device_authorization_endpoint=me.url + "/device_authorization", revocation_endpoint=me.url + "/revoke",
                           grant_types_supported=["client_credentials", "authorization_code", "refresh_token"],
                           code_challenge_methods_supported=["S256"])

        return app


@pytest.fixture(scope="session")
def oauth2_server(mail_servers):
    server = AuthServer(port=mail_servers.oauth2_port).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_oauth2(oauth2_server):
    """The session's server with its switches reset after the test."""
    yield oauth2_server
    oauth2_server.expires_in = 3600
    oauth2_server.token_status = None
    oauth2_server.token_delay = 0.0
    oauth2_server.token_bytes = 32
    oauth2_server.introspection_status = None
