"""The run_idle process: one asyncio event loop holding every IDLE session this process leases.

Threads: the event loop runs the sessions (connections/mail/idle.py, no Django) in a thread of
its own; the main thread owns the database: it claims and renews leases every `tick` seconds,
resolves credentials, starts sessions, and handles what the sessions report through a queue.
On new mail it queues the connection's normal poll task (`request_poll`, trigger "push"):
the same mailbox lock and exactly-once path as a scheduled poll. A broken session is retried
with exponential backoff; a server without IDLE is left to the schedule (retried hourly).
"""
from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass, field

from django.db import DatabaseError, InterfaceError, close_old_connections

from ...errors import TenantMailError
from ...mail.idle import IdleUnsupported, run_idle_session, small_tls_buffers
from ...models import InboundConnection, PushState, Selection
from ..inbound import dispatch
from ..setup.connection_settings import mail_settings_for, open_credential
from . import lease

log = logging.getLogger("tenantmail.push")

UNSUPPORTED_RETRY_SECONDS = 3600
POLL_COALESCE_SECONDS = 0.5


def _release_free_memory() -> None:
    """Give memory freed by the allocator back to the system (glibc's malloc_trim): thousands
    of TLS handshakes leave megabytes of freed scratch space that would count as resident."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def wants_poll(kind: str, detail: str, *, unread_only: bool) -> bool:
    """New mail (EXISTS), or, for a connection that polls unread mails, a mail that is unread
    (again). Not the FETCH (\\Seen) or EXPUNGE that a poll's own post-processing causes: that
    would poll once more for nothing."""
    if kind == "exists":
        return True
    return kind == "fetch" and unread_only and "\\SEEN" not in detail.upper()


@dataclass
class _Session:
    connection_id: int
    stop: asyncio.Event | None = None
    future: object = None
    running: bool = False
    failures: int = 0
    next_attempt: float = 0.0
    last_poll_request: float = 0.0
    poll_pending: bool = False
    unread_only: bool = True  # the connection polls unread mails only (FETCH events may matter)
    settings_at: object = None  # the connection's updated_at when the session started


@dataclass
class RunnerOptions:
    max_sessions: int = 2000
    ttl_seconds: int = 60
    tick_seconds: float = 5.0
    reissue_after: float = 25 * 60
    backoff_max: float = 300.0
    claim_batch: int = 500


@dataclass
class IdleRunner:
    options: RunnerOptions = field(default_factory=RunnerOptions)
    holder: str = field(default_factory=lease.new_holder)

    def __post_init__(self) -> None:
        self.sessions: dict[int, _Session] = {}
        self.events: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self._connected = self._connected_at_last_tick = 0
        self._thread = threading.Thread(target=self.loop.run_forever, name="idle-loop", daemon=True)

    # --- the main thread --------------------------------------------------------------

    def run(self, *, stop: threading.Event) -> None:
        small_tls_buffers()
        self._thread.start()
        log.info("run_idle %s started", self.holder)
        next_tick = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                try:
                    if now >= next_tick:
                        next_tick = time.monotonic() + self.options.tick_seconds
                        self.tick()
                    self._flush_pending_polls()
                    wait = max(0.0, min(next_tick - time.monotonic(), POLL_COALESCE_SECONDS))
                    try:
                        item = self.events.get(timeout=wait)
                    except queue.Empty:
                        continue
                    self._handle(*item)
                    while True:  # drain a burst without waiting
                        try:
                            self._handle(*self.events.get_nowait())
                        except queue.Empty:
                            break
                except (DatabaseError, InterfaceError) as exc:
                    # The database is away: the sessions stay up; leases are renewed once it is
                    # back (until then no process can take them over either).
                    log.warning("run_idle: database error, retrying at the next tick: %s", exc)
                    close_old_connections()
        finally:
            self.shutdown()

    def tick(self) -> None:
        o = self.options
        held = lease.renew(holder=self.holder, ttl_seconds=o.ttl_seconds)
        room = o.max_sessions - len(held)
        held = lease.claim(holder=self.holder, limit=min(room, o.claim_batch), ttl_seconds=o.ttl_seconds)
        wanted = set(lease.push_connection_ids())
        gone = [cid for cid in held if cid not in wanted]
        if gone:
            lease.release(holder=self.holder, connection_ids=gone)
        keep = held - set(gone)
        for cid in list(self.sessions):
            if cid not in keep:  # lease lost (another process took it) or push turned off
                self._stop_session(self.sessions.pop(cid))
        changed = dict(InboundConnection.objects.filter(pk__in=keep).values_list("pk", "updated_at"))
        for cid in list(self.sessions):
            if self.sessions[cid].settings_at not in (None, changed.get(cid)):
                # The connection's settings changed: a new session with the new ones.
                self._stop_session(self.sessions.pop(cid))
        now = time.monotonic()
        for cid in sorted(keep):
            session = self.sessions.setdefault(cid, _Session(cid))
            if not session.running and session.next_attempt <= now:
                self._start_session(session)
        # Once a wave of logins has settled (no session connected since the last tick): give
        # the TLS handshakes' scratch memory back.
        if self._connected and self._connected == self._connected_at_last_tick:
            _release_free_memory()
            self._connected = 0
        self._connected_at_last_tick = self._connected

    def _start_session(self, session: _Session) -> None:
        cid = session.connection_id
        try:
            connection = InboundConnection.objects.get(pk=cid)
            credential = open_credential(connection)
            settings = mail_settings_for(connection, credential=credential)
        except (TenantMailError, InboundConnection.DoesNotExist) as exc:
            self._failed(session, str(exc))
            return
        session.running = True
        session.unread_only = connection.selection == Selection.UNREAD
        session.settings_at = connection.updated_at
        lease.record(holder=self.holder, connection_id=cid, state=PushState.CONNECTING)

        async def start() -> None:
            session.stop = asyncio.Event()
            await self._session(session, settings, credential.password if credential else "")

        session.future = asyncio.run_coroutine_threadsafe(start(), self.loop)

    def _handle(self, session: _Session, kind: str, detail: str) -> None:
        if self.sessions.get(session.connection_id) is not session:
            return  # a session this process no longer runs
        cid = session.connection_id
        if kind == "connected":
            self._connected += 1
            session.failures = 0
            lease.record(holder=self.holder, connection_id=cid, state=PushState.IDLE, event="connected")
            self._request_poll(session)  # mail that came while no session listened
        elif wants_poll(kind, detail, unread_only=session.unread_only):
            lease.record(holder=self.holder, connection_id=cid, event=detail or kind)
            self._request_poll(session)
        elif kind in ("expunge", "fetch"):
            lease.record(holder=self.holder, connection_id=cid, event=detail or kind)
        elif kind == "unsupported":
            session.running = False
            session.next_attempt = time.monotonic() + UNSUPPORTED_RETRY_SECONDS
            lease.record(holder=self.holder, connection_id=cid, state=PushState.UNSUPPORTED, error=detail)
        elif kind == "error":
            session.running = False
            self._failed(session, detail)
        elif kind == "ended":
            session.running = False

    def _failed(self, session: _Session, error: str) -> None:
        session.failures += 1
        delay = min(self.options.backoff_max, 2.0 ** min(session.failures, 16))
        session.next_attempt = time.monotonic() + delay * random.uniform(0.8, 1.2)
        lease.record(holder=self.holder, connection_id=session.connection_id, state=PushState.RETRYING,
                     error=error[:2000])
        log.warning("IDLE session of inbound connection %s: %s (retry in %.0f s)", session.connection_id,
                    error, delay)

    def _request_poll(self, session: _Session) -> None:
        """Queue the normal poll; a burst of events within POLL_COALESCE_SECONDS gives one
        poll now and one right after (so the burst's last mail is not left behind)."""
        now = time.monotonic()
        if now - session.last_poll_request >= POLL_COALESCE_SECONDS:
            session.last_poll_request = now
            session.poll_pending = False
            dispatch.request_poll(connection_id=session.connection_id, trigger="push")
        else:
            session.poll_pending = True

    def _flush_pending_polls(self) -> None:
        now = time.monotonic()
        for session in self.sessions.values():
            if session.poll_pending and now - session.last_poll_request >= POLL_COALESCE_SECONDS:
                self._request_poll(session)

    def _stop_session(self, session: _Session) -> None:
        if session.stop is not None:
            self.loop.call_soon_threadsafe(session.stop.set)

    def shutdown(self, *, wait: float = 5.0) -> None:
        for session in self.sessions.values():
            self._stop_session(session)
        deadline = time.monotonic() + wait
        for session in self.sessions.values():
            if session.future is not None:
                try:
                    session.future.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:
                    pass
        try:
            lease.release(holder=self.holder)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            log.info("run_idle %s stopped", self.holder)

    # --- the event loop's thread --------------------------------------------------------

    async def _session(self, session: _Session, settings, password: str) -> None:
        def report(kind: str, detail: str) -> None:
            self.events.put((session, kind, detail))

        try:
            await run_idle_session(settings, password, on_event=report, stop=session.stop,
                                   reissue_after=self.options.reissue_after)
        except IdleUnsupported as exc:
            report("unsupported", str(exc))
        except TenantMailError as exc:
            report("error", str(exc))
        except Exception as exc:  # a bug: reported, retried with backoff
            report("error", f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            report("ended", "")
