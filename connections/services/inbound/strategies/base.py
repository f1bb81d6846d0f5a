"""What every protocol's poll does the same way: log in, run the protocol's session, store a
batch and count it, record finished post-processing, keep the mailbox lock alive.

A strategy's `session(client)` lists what is new on the server, fetches it in batches,
stores each with `store()` (committed before the server is touched) and post-processes it;
`after_session()` runs once the client has logged out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ....mail.imap import Goodbye
from ....models import InboundConnection
from ...oauth2.connect import login
from ...persistence import inbound as inbound_rows
from .. import faults
from ..fetched import FetchedMail
from ..result import PollResult, record_outcomes
from ..storage import StoreOutcome, store_batch

if TYPE_CHECKING:
    from ....mail.opener import HeadStart
    from ..poll import Lease


class PollStrategy:
    def __init__(self, *, connection: InboundConnection, mail_settings, password: str, result: PollResult,
                 parse: bool, lease: Lease, head_start: HeadStart | None = None) -> None:
        self.connection = connection
        self.mail_settings = mail_settings
        self.password = password
        self.result = result
        self.parse = parse
        self.lease = lease
        self.head_start = head_start  # the socket, opened while the poll took its lock

    def client_class(self) -> type:
        raise NotImplementedError

    # Whether the goodbye (IMAP LOGOUT) may go on while the poll writes its outcome: not for
    # POP3, whose QUIT applies the deletions that after_session() records.
    goodbye_in_background = False

    def run(self) -> Goodbye | None:
        """Returns the goodbye still under way (read by the poll once its outcome is written)."""
        self.check()
        goodbye = None
        with login(self.connection, self.client_class(), self.mail_settings, self.password,
                   head_start=self.head_start) as client:
            self.session(client)
            if self.goodbye_in_background:
                goodbye = client.begin_logout()
        self.after_session()
        return goodbye

    def check(self) -> None:
        """Refuse settings that cannot work before connecting (raises TenantMailError)."""

    def session(self, client: Any) -> None:
        raise NotImplementedError

    def after_session(self) -> None:
        """After the client logged out (POP3: the deletions are done at QUIT)."""

    def store(self, mails: list[FetchedMail], *, mark_post_processed: list[int] | None = None) -> list[StoreOutcome]:
        """Store and commit a batch, count it; returns the outcomes whose mail is safely in
        the database (stored, or stored earlier)."""
        outcomes = store_batch(connection=self.connection, mails=mails, parse=self.parse,
                               mark_post_processed=mark_post_processed)
        faults.reached("stored")
        return record_outcomes(self.result, outcomes)

    def fetched(self, nbytes: int, count: int = 1) -> None:
        self.result.fetched += count
        self.result.bytes += nbytes

    @staticmethod
    def mark_post_processed(pks: list[int]) -> None:
        inbound_rows.mark_post_processed(pks)
