"""A small HTTP/1.1 POST client for webhook deliveries: one kept-alive connection per
delivery run, a timeout, no redirects followed (a 3xx is a failed attempt), the
response body read and dropped (at most 64 KB kept from being read at all). The
connection goes through guarded_http (TENANTMAIL_BLOCKED_NETWORKS: a refused target
raises guarded_http.TargetBlocked)."""
from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from ...errors import ConfigurationError
from ..common.guarded_http import GuardedHTTPConnection, GuardedHTTPSConnection

MAX_RESPONSE_BYTES = 64 * 1024


class Poster:
    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"The webhook URL must be http:// or https:// with a host (was {parts.scheme!r}).")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _open(self) -> http.client.HTTPConnection:
        if self.https:
            return GuardedHTTPSConnection(self.host, self.port, timeout=self.timeout,
                                          context=ssl.create_default_context())
        return GuardedHTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, body: bytes, headers: dict[str, str]) -> int:
        """POST; returns the status code. Raises OSError / http.client.HTTPException."""
        reused = self._conn is not None
        try:
            return self._post(body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            return self._post(body, headers)  # the kept-alive connection had been closed by the server

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        if self._conn is None:
            self._conn = self._open()
        try:
            self._conn.request("POST", self.path, body=body, headers=headers)
            response = self._conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            if response.will_close or not response.isclosed():
                self.close()
            return response.status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
