"""One poll strategy per protocol, over one base (base.py): list what is new, fetch it,
store it, post-process it on the server."""
from __future__ import annotations

from ....models import InboundConnection, Protocol
from .base import PollStrategy


def strategy_for(connection: InboundConnection) -> type[PollStrategy]:
    """The strategy class of the connection's protocol."""
    if connection.protocol == Protocol.POP3:
        from .pop3 import POP3Strategy

        return POP3Strategy
    from .imap import IMAPStrategy

    return IMAPStrategy
