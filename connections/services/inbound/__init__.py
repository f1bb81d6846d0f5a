"""Inbound mail: polling IMAP and POP3 mailboxes into stored messages, exactly once.

A poll, in the order it runs:
- dispatch.py — which connections are due, claiming them, polls in batches per task;
- poll.py — one poll's lifecycle: history row, mailbox lock (locks.py), the protocol's
  strategy, back-off and next run (schedule.py);
- strategies/ — per protocol (imap.py, pop3.py over base.py): list what is new, fetch,
  store, post-process on the server;
- pipeline.py, prepare_pool.py — small batches fetched and prepared ahead, in threads and
  forked helper processes;
- fetched.py, storage.py, files.py — a fetched mail, storing a batch (rows after files),
  the files and their fsync policy; the fast SQL is in services/persistence/inbound.py;
- result.py, faults.py — what a poll did; the points where tests stop a poll.
Around it: deferred.py (parsing later), export.py, orphans.py (leftover files),
history.py (poll history), checks.py (settings checks for the admin and the config file).
"""
