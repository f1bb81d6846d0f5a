"""Real proxies on loopback for the test suite (a pytest plugin, loaded from tests/conftest.py).

Fixtures (session scope, one process each, stopped by pid at session end):
``socks_proxy``  -> :class:`RunningProxy` — microsocks (SOCKS5, user/password authentication).
``http_proxy``   -> :class:`RunningProxy` — tinyproxy 1.11 (HTTP CONNECT, BasicAuth).
``dante_proxy``  -> :class:`RunningProxy` — Dante's danted (SOCKS5 as companies run it; no
                    authentication: its user/password method needs system accounts).
``dead_proxy_port`` -> a free loopback port where nothing listens.

``RunningProxy.log()`` is the proxy's own log (microsocks' stdout: one "connected to host:port"
line per tunnel; danted's logoutput: one "tcp/connect [" line per tunnel; tinyproxy's LogFile at level Connect: one "CONNECT host:port" line per
request), which is how a test proves its traffic went through the proxy.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

HOST = "127.0.0.1"


@dataclass
class RunningProxy:
    type: str  # socks5 | http
    host: str
    port: int
    username: str
    password: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tunnels_to(self, port: int) -> int:
        """How many tunnels to 127.0.0.1/localhost:port the proxy's log shows."""
        text = self.log()
        if self.type == "socks5" and self.username:  # microsocks
            return sum(1 for line in text.splitlines() if "connected to" in line and line.endswith(f":{port}"))
        if self.type == "socks5":  # danted: "tcp/connect [: <client> <proxy> -> <local> <target>"
            return sum(1 for line in text.splitlines() if "tcp/connect [" in line and line.endswith(f".{port}"))
        return sum(1 for line in text.splitlines() if "Request" in line and f"CONNECT " in line
                   and f":{port} HTTP/" in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            # danted forks helpers: end its whole process group (each proxy has its own).
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise RuntimeError(f"{what} did not start on port {port} (exit {proc.poll()}):\n{text[-2000:]}")


def start_socks_proxy(root: Path) -> RunningProxy:
    binary = shutil.which("microsocks") or "/usr/bin/microsocks"
    port, user, password = free_port(), "socks-user", f"pw-{uuid.uuid4().hex[:10]}"
    log = root / "microsocks.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "-i", HOST, "-p", str(port), "-u", user, "-P", password],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _wait_listening(port, proc, "microsocks", log)
    return RunningProxy("socks5", HOST, port, user, password, log, proc)


def start_http_proxy(root: Path) -> RunningProxy:
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    port, user, password = free_port(), "http-user", f"pw-{uuid.uuid4().hex[:10]}"
    log = root / "tinyproxy.log"
    conf = root / "tinyproxy.conf"
    conf.write_text(
        "User nobody\nGroup nogroup\n"
        f"Port {port}\nListen {HOST}\nTimeout 600\nLogFile \"{log}\"\nLogLevel Connect\n"
        f"MaxClients 2000\nAllow {HOST}\nBasicAuth {user} {password}\n"
    )
    with open(root / "tinyproxy.out", "wb") as out:
        proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _wait_listening(port, proc, "tinyproxy", root / "tinyproxy.out")
    return RunningProxy("http", HOST, port, user, password, log, proc)


def start_dante_proxy(root: Path) -> RunningProxy:
    binary = shutil.which("danted") or "/usr/sbin/danted"
    port = free_port()
    log, conf = root / "danted.log", root / "danted.conf"
    conf.write_text(
        f"logoutput: {log}\ninternal: {HOST} port = {port}\nexternal: {HOST}\n"
        "clientmethod: none\nsocksmethod: none\nuser.privileged: root\nuser.unprivileged: nobody\n"
        f"client pass {{ from: {HOST}/8 to: 0.0.0.0/0 log: error }}\n"
        f"socks pass {{ from: {HOST}/8 to: 0.0.0.0/0 log: connect error }}\n"
    )
    with open(root / "danted.out", "wb") as out:
        proc = subprocess.Popen([binary, "-f", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _wait_listening(port, proc, "danted", root / "danted.out")
    return RunningProxy("socks5", HOST, port, "", "", log, proc)


@pytest.fixture(scope="session")
def proxy_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="tmpx-", dir="/tmp"))
    root.chmod(0o777)  # tinyproxy runs as nobody and writes its log here
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def socks_proxy(proxy_root: Path) -> Iterator[RunningProxy]:
    proxy = start_socks_proxy(proxy_root)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def http_proxy(proxy_root: Path) -> Iterator[RunningProxy]:
    proxy = start_http_proxy(proxy_root)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def dante_proxy(proxy_root: Path) -> Iterator[RunningProxy]:
    proxy = start_dante_proxy(proxy_root)
    yield proxy
    proxy.stop()


@pytest.fixture
def dead_proxy_port() -> int:
    return free_port()
