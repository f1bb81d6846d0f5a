"""The outbox: outbound mail from enqueue to the server's reply, a module per step.

- enqueue.py   — every way in: `enqueue`, `enqueue_many`, `store` (prepare.py checks and
                 builds the MIME once: mime.py, addresses.py, fastmime.py, attributes.py,
                 templates.py)
- dispatch.py  — `kick` a worker; beat's `dispatch_due`
- sending.py   — `send_due`: claim (claims.py) → SMTP session(s) (parallel.py) → record
- outcomes.py  — what a reply makes of a message (sent, retry, failed, uncertain, held)
- writer.py    — where an outcome is written: `record_outcomes`, through
                 services/persistence/outbound.py (the fast SQL beside its ORM version)
- recovery.py  — crash recovery: leases, heartbeat, `recover_expired`
- actions.py   — an operator's actions (requeue, cancel, resend or mark sent an uncertain one)
- queries.py   — a connection by tenant and name, counts by status; api.py — the REST API's view
- policy.py    — the timing rules read from the settings (attempts, backoff, hold, lease)
"""
