"""The outbox's newer parts, each a small module: crash recovery, templates, bulk enqueue,
the receiver attributes. `connections.services.outbox` stays the entry point for sending."""
