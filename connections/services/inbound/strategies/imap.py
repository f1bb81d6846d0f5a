"""Polling an IMAP folder: new mails by UID (above the UID floor when selecting all), fetched
through the pipeline, post-processed (mark read / delete / move / keep) once committed.

UIDVALIDITY: when the server renumbers the folder, every known UID is void; the poll
re-syncs (mails are matched to stored ones by Message-ID + content hash, storage.py).
The UID floor: with selection "all", every UID below `imap_uid_next` is stored, so a poll
searches only from there, and not at all when UIDNEXT says nothing arrived.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass

from ....errors import TenantMailError
from ....models import InboundConnection, PostProcessing, Selection, StoredMessage
from ...persistence import inbound as inbound_rows
from .. import faults
from ..fetched import FetchedMail, new_spool_file
from ..pipeline import Prefetch, plan
from ..result import add_error
from .base import PollStrategy

log = logging.getLogger(__name__)

MOVES = (PostProcessing.MOVE, PostProcessing.MOVE_AND_MARK_READ)


@dataclass
class _Listing:
    new: list[int]  # UIDs to fetch now, in order
    more_waiting: bool  # more new mails than max_messages
    next_floor: int | None  # where the next poll may start once these are stored
    scope: str  # what the floor belongs to (server, user, folder, UIDVALIDITY)


class IMAPStrategy(PollStrategy):
    goodbye_in_background = True

    def client_class(self) -> type:
        from ....mail.imap import IMAPClient

        return IMAPClient

    def check(self) -> None:
        if self.connection.post_processing in MOVES and not self.connection.archive_folder.strip():
            raise TenantMailError(
                "Post-processing moves mails to an archive folder, but no archive folder is set.",
                hint="set the archive folder of the connection, or choose another post-processing",
            )

    def session(self, client) -> None:
        connection = self.connection
        self.client = client
        # The connection is shared with the pipeline's fetching thread: one command at a time.
        self.imap_lock = threading.Lock()
        # Mails post-processed on the server whose post_processed_at is not written yet: it
        # goes into the next batch's transaction (one commit less per batch), the rest at the end.
        self.to_mark: list[int] = []
        info = client.select(connection.folder)
        self.uidvalidity = self._check_uidvalidity(int(info.uidvalidity))
        if connection.post_processing in MOVES:
            client.create_folder(connection.archive_folder)
        self._recover()
        listing = self._list_new(info)
        if not listing.new:
            if connection.imap_resync and not listing.more_waiting:
                self._end_resync()
            self._raise_uid_floor(listing.scope, listing.next_floor)
            return
        self.sizes = client.fetch_sizes(listing.new)
        self._fetch_and_store(listing.new)
        if connection.imap_resync and not listing.more_waiting and not self.result.failed:
            self._end_resync()
        if not self.result.failed and not connection.imap_resync:
            self._raise_uid_floor(listing.scope, listing.next_floor)

    # ----------------------------------------------------------------------- the folder

    def _check_uidvalidity(self, uidvalidity: int) -> int:
        connection = self.connection
        if connection.imap_uidvalidity is not None and connection.imap_uidvalidity != uidvalidity:
            # The server renumbered the folder: every UID we know is void. Re-sync: new
            # mails are matched to stored ones by Message-ID + content hash.
            log.warning("inbound %s: UIDVALIDITY changed %s -> %s; re-syncing", connection.pk,
                        connection.imap_uidvalidity, uidvalidity)
            connection.imap_resync = True
            add_error(self.result, f"The folder's UIDVALIDITY changed ({connection.imap_uidvalidity} -> "
                                   f"{uidvalidity}); mails are matched to stored ones by Message-ID and content "
                                   "instead of UID.")
        if connection.imap_uidvalidity != uidvalidity or connection.imap_resync:
            connection.imap_uidvalidity = uidvalidity
            InboundConnection.objects.filter(pk=connection.pk).update(
                imap_uidvalidity=uidvalidity, imap_resync=connection.imap_resync
            )
        return uidvalidity

    def _recover(self) -> None:
        """Mails stored by an earlier poll that died before post-processing them."""
        pending = list(
            StoredMessage.objects.filter(
                connection=self.connection, post_processed_at__isnull=True, uidvalidity=self.uidvalidity
            ).values_list("pk", "uid")[:10000]
        ) if getattr(self.connection, "has_pending", True) else []
        if not pending:
            return
        # Only UIDs still in the folder (a person may have moved or deleted some meanwhile;
        # a MOVE of a vanished UID could fail on every poll otherwise).
        present = set(self.client.search_uids(unseen_only=False))
        gone = [pk for pk, uid in pending if uid not in present]
        self.mark_post_processed(gone)
        pending = [(pk, uid) for pk, uid in pending if uid in present]
        self.result.recovered += len(gone)
        for start in range(0, len(pending), 500):
            chunk = pending[start:start + 500]
            if self._post_process_safely([u for _, u in chunk], "earlier mails"):
                self.mark_post_processed([pk for pk, _ in chunk])
                self.result.recovered += len(chunk)

    def _list_new(self, info) -> _Listing:
        """What is new: with selection "all", only UIDs from the floor on (below it
        everything is stored), and no search at all when UIDNEXT says nothing arrived."""
        connection = self.connection
        unread = connection.selection == Selection.UNREAD
        scope = _uid_scope(self.mail_settings, connection.folder, self.uidvalidity)
        floor = None
        if not unread and not connection.imap_resync and connection.imap_uid_scope == scope:
            floor = connection.imap_uid_next
        if floor and info.uidnext and info.uidnext <= floor:
            uids = []
        else:
            uids = self.client.search_uids(unseen_only=unread, min_uid=floor)
        keys = [self._server_key(uid) for uid in uids]
        known = inbound_rows.stored_server_keys(connection_id=connection.pk, server_keys=keys)
        new = [uid for uid, key in zip(uids, keys) if key not in known]
        self.result.skipped += len(uids) - len(new)
        more_waiting = len(new) > connection.max_messages
        next_floor = None if unread else (
            new[connection.max_messages] if more_waiting else max([*uids, (info.uidnext or 1) - 1]) + 1
        )
        return _Listing(new=new[: connection.max_messages], more_waiting=more_waiting, next_floor=next_floor,
                        scope=scope)

    # ----------------------------------------------------------------------- fetch, store, post-process

    def _fetch_and_store(self, new: list[int]) -> None:
        """Fetch in batches; store + commit; then post-process (pipeline.py fetches and
        prepares the small batches ahead)."""
        prefetch = Prefetch(plan=plan(new, self.sizes, self.connection.max_message_size),
                            fetch=self._fetch_small, parse=self.parse)
        try:
            for index, (kind, batch) in enumerate(prefetch.plan):
                if kind == "small":
                    mails = prefetch.take(index)
                    self.fetched(sum(m.stored_size for m in mails), count=len(mails))
                    self._flush(mails)
                elif kind == "oversized":
                    self._flush([self._fetch_header(batch[0])])
                else:  # large: streamed to a spool file in chunks
                    self._flush([self._fetch_large(batch[0])])
        finally:
            prefetch.close()
            self.mark_post_processed(self.to_mark)  # the last batch (also when the poll stops early)
            faults.reached("post_processed")
            prefetch.discard_unstored()

    def _server_key(self, uid: int) -> str:
        return f"imap:{self.uidvalidity}:{uid}"  # the mail's identity (unique per connection)

    def _mail(self, uid: int, **fields) -> FetchedMail:
        return FetchedMail(server_key=self._server_key(uid), uidvalidity=self.uidvalidity, uid=uid, **fields)

    def _fetch_small(self, uids: list[int]) -> list[FetchedMail]:
        with self.imap_lock:
            fetched = list(self.client.fetch_many(uids))
        uidvalidity, sizes = self.uidvalidity, self.sizes
        return [FetchedMail(server_key=f"imap:{uidvalidity}:{uid}", size=sizes.get(uid, len(data)), data=data,
                            uidvalidity=uidvalidity, uid=uid) for uid, data in fetched]

    def _fetch_header(self, uid: int) -> FetchedMail:
        with self.imap_lock:
            header = self.client.fetch_header(uid)
        self.fetched(len(header))
        return self._mail(uid, size=self.sizes[uid], data=header, oversized=True)

    def _fetch_large(self, uid: int) -> FetchedMail:
        fh, path = new_spool_file()
        try:
            with fh, self.imap_lock:
                written = self.client.fetch_to(uid, fh, size=self.sizes[uid])
        except BaseException:
            os.unlink(path)
            raise
        self.fetched(written)
        return self._mail(uid, size=self.sizes[uid], path=path)

    def _flush(self, mails: list[FetchedMail]) -> None:
        mode = self.connection.post_processing
        done = self.store(mails, mark_post_processed=self.to_mark)
        self.to_mark.clear()
        # An oversized mail is stored as headers only: deleting it on the server would
        # lose it, so Delete leaves it there (it is remembered by UID, never re-fetched).
        uids_done = [o.mail.uid for o in done if not (o.mail.oversized and mode == PostProcessing.DELETE)]
        pks_done = [o.pk for o in done if o.pk]
        if mode != PostProcessing.KEEP and uids_done:
            with self.imap_lock:
                ok = self._post_process_safely(uids_done, "new mails")
            if ok:
                self.to_mark.extend(pks_done)
        elif mode != PostProcessing.KEEP:  # nothing to do on the server
            self.to_mark.extend(pks_done)
        # KEEP: store_batch wrote the rows as post-processed already.
        self.lease.renew()

    def _post_process(self, uids: list[int]) -> None:
        if not uids:
            return
        mode = self.connection.post_processing
        if mode == PostProcessing.MARK_READ:
            self.client.mark_seen(uids)
        elif mode == PostProcessing.DELETE:
            self.client.delete(uids)
        elif mode in MOVES:
            if mode == PostProcessing.MOVE_AND_MARK_READ:
                self.client.mark_seen(uids)
            self.client.move(uids, self.connection.archive_folder)

    def _post_process_safely(self, uids: list[int], what: str) -> bool:
        """Post-process; a permanent refusal of the server is recorded (and retried next
        poll) instead of stopping the poll."""
        try:
            self._post_process(uids)
            return True
        except TenantMailError as exc:
            from ....mail.errors import ProtocolError

            if isinstance(exc, ProtocolError) and not exc.transient:
                add_error(self.result, f"Post-processing ({what}) failed: {exc}; it is retried on the next poll.")
                self.result.failed += 1
                return False
            raise

    # ----------------------------------------------------------------------- re-sync and UID floor

    def _end_resync(self) -> None:
        self.connection.imap_resync = False
        InboundConnection.objects.filter(pk=self.connection.pk).update(imap_resync=False)

    def _raise_uid_floor(self, scope: str, next_floor: int | None) -> None:
        """Remember that every UID below next_floor is stored (written only when it moves)."""
        connection = self.connection
        if next_floor is None or (connection.imap_uid_scope == scope and connection.imap_uid_next == next_floor):
            return
        connection.imap_uid_next, connection.imap_uid_scope = next_floor, scope
        InboundConnection.objects.filter(pk=connection.pk).update(imap_uid_next=next_floor, imap_uid_scope=scope)


def _uid_scope(mail_settings, folder: str, uidvalidity: int) -> str:
    """Names the folder a UID floor belongs to: another server, user, folder or UIDVALIDITY
    makes the stored floor void."""
    where = f"{mail_settings.host}|{mail_settings.effective_port}|{mail_settings.username}|{folder}"
    return f"{uidvalidity}:{hashlib.sha256(where.encode()).hexdigest()[:40]}"
