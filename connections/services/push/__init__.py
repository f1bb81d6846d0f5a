"""IMAP IDLE push: leases of push connections, the run_idle runner, and the push state."""
