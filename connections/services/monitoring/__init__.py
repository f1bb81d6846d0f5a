"""Never silent: heartbeats, the watchdog, alerts and their channels, health and metrics.

Modules: settings (thresholds), runtime (a connection's run-time state), heartbeats (beat and
workers say they are alive), watchdog (finds problems), alerts (the alert rows' state machine),
notify (e-mail and webhook), health (/readyz and `manage.py health`), metrics (/metrics).
"""
