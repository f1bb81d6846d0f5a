"""Polling a POP3 mailbox: new mails by UIDL; Delete or Keep on the server.

Deletions (DELE) take effect only at QUIT: a mail's post_processed_at is recorded after the
session ended well. A worker that dies before QUIT leaves the mails on the server and their
rows pending; the next poll deletes them without storing them again.
"""
from __future__ import annotations

import io
import os

from ....models import PostProcessing, StoredMessage
from .. import faults
from ..fetched import FetchedMail, new_spool_file
from ..pipeline import batch_bytes, batch_count, stream_threshold
from .base import PollStrategy

_CHUNK_QUERY = 5000


class POP3Strategy(PollStrategy):
    def client_class(self) -> type:
        from ....mail.pop3 import POP3Client

        return POP3Client

    def session(self, client) -> None:
        self.client = client
        self.delete = self.connection.post_processing == PostProcessing.DELETE
        self.to_mark: list[int] = []  # StoredMessage pks whose DELE takes effect at QUIT
        listing = client.uidl()  # msgnum -> uidl
        by_uidl = {uidl: num for num, uidl in listing.items()}
        known = self._known(list(by_uidl))
        self._recover(by_uidl, known)
        new = [(num, uidl) for num, uidl in sorted(listing.items()) if uidl not in known]
        self.result.skipped += len(listing) - len(new)
        new = new[: self.connection.max_messages]
        sizes = client.list_sizes() if new else {}
        self._fetch_all(new, sizes)
        faults.reached("before_quit")

    def after_session(self) -> None:
        # QUIT succeeded: the deletions are done on the server.
        self.mark_post_processed(self.to_mark)
        faults.reached("post_processed")

    def _known(self, uidls: list[str]) -> dict[str, tuple[int, bool]]:
        """uidl -> (StoredMessage pk, post-processed) of the mails stored already."""
        known: dict[str, tuple[int, bool]] = {}
        for start in range(0, len(uidls), _CHUNK_QUERY):
            chunk = uidls[start:start + _CHUNK_QUERY]
            for pk, uidl, done in StoredMessage.objects.filter(connection=self.connection, uidl__in=chunk).values_list(
                "pk", "uidl", "post_processed_at"
            ):
                known[uidl] = (pk, done is not None)
        return known

    def _recover(self, by_uidl: dict[str, int], known: dict[str, tuple[int, bool]]) -> None:
        """Mails stored earlier but not yet deleted (the worker died before QUIT)."""
        if self.delete:
            for uidl, (pk, done) in known.items():
                if not done:
                    self.client.dele(by_uidl[uidl])
                    self.to_mark.append(pk)
                    self.result.recovered += 1
        # Pending rows whose mail is no longer on the server: nothing left to do.
        gone = StoredMessage.objects.filter(connection=self.connection, post_processed_at__isnull=True).exclude(
            uidl__in=list(by_uidl)
        ).values_list("pk", flat=True)[:10000]
        self.mark_post_processed(list(gone))

    def _fetch_all(self, new: list[tuple[int, str]], sizes: dict[int, int]) -> None:
        batch: list[FetchedMail] = []
        batch_size = 0
        for num, uidl in new:
            size = sizes.get(num, 0)
            batch.append(self._fetch_one(num, uidl, size))
            batch_size += size
            if len(batch) >= batch_count() or batch_size >= batch_bytes():
                self._flush(batch)
                batch, batch_size = [], 0
        if batch:
            self._flush(batch)

    def _fetch_one(self, num: int, uidl: str, size: int) -> FetchedMail:
        key = f"pop3:{uidl}"
        if size > self.connection.max_message_size:
            data = self.client.top(num, 0)
            self.fetched(len(data))
            return FetchedMail(server_key=key, size=size, data=data, uidl=uidl, msgnum=num, oversized=True)
        if size > stream_threshold():
            fh, path = new_spool_file()
            try:
                with fh:
                    written = self.client.retr_to(num, fh)
            except BaseException:
                os.unlink(path)
                raise
            self.fetched(written)
            return FetchedMail(server_key=key, size=size, path=path, uidl=uidl, msgnum=num)
        buf = io.BytesIO()
        self.client.retr_to(num, buf)
        data = buf.getvalue()
        self.fetched(len(data))
        return FetchedMail(server_key=key, size=size or len(data), data=data, uidl=uidl, msgnum=num)

    def _flush(self, batch: list[FetchedMail]) -> None:
        done = self.store(batch)
        if self.delete:
            for outcome in done:
                if not outcome.mail.oversized:  # headers only: deleting would lose it
                    self.client.dele(outcome.mail.msgnum)
                if outcome.pk:
                    self.to_mark.append(outcome.pk)
        else:
            self.mark_post_processed([o.pk for o in done if o.pk])
        self.lease.renew()
