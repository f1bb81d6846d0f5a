"""Proxies: which SOCKS5 / HTTP CONNECT proxy a connection goes through (profile or inline)."""
from .resolve import describe_proxy, proxy_settings_for, proxy_url_for

__all__ = ["describe_proxy", "proxy_settings_for", "proxy_url_for"]
