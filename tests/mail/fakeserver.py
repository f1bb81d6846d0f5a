"""A tiny scripted TCP server that records every byte it receives.

Each accepted connection runs `handler(conn)` in a thread; `conn.send()` / `conn.readline()`
talk to the client. Used for faults real servers won't produce on demand (drops, stalls,
odd replies) and to prove what a client did or did not send.
"""
from __future__ import annotations

import socket
import ssl
import threading


class Conn:
    def __init__(self, sock: socket.socket, record: bytearray, lock: threading.Lock) -> None:
        self.sock = sock
        self._record = record
        self._lock = lock
        self._buffer = b""

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        with self._lock:
            self._record.extend(chunk)
        self._buffer += chunk
        return True

    def readline(self) -> bytes:
        """One line including its LF, or b"" when the client closed."""
        while b"\n" not in self._buffer:
            if not self._fill():
                line, self._buffer = self._buffer, b""
                return line
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                break
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if not self._fill():
                data, self._buffer = self._buffer, b""
                return data
        data, _, self._buffer = self._buffer.partition(marker)
        return data + marker

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_side=True)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ScriptedServer:
    def __init__(self, handler) -> None:
        self.handler = handler
        self.received = bytearray()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.host, self.port = self._listener.getsockname()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[Conn] = []
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.settimeout(20)
            conn = Conn(sock, self.received, self._lock)
            self._conns.append(conn)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, conn: Conn) -> None:
        try:
            self.handler(conn)
        except (OSError, ssl.SSLError):
            pass
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(exc)
        finally:
            conn.close()

    @property
    def data(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def stop(self) -> None:
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        for conn in self._conns:
            conn.close()
