"""Never silent: heartbeats, the watchdog, alerts and their channels, health and metrics.

Modules: settings (thresholds), runtime (a connection's run-time state), outbound (outbound
send state: failed sends in a row, held), heartbeats (beat and workers say they are alive),
watchdog (finds problems), broker_fs (queue age on filesystem://), alerts (the alert rows' state
machine), notify (e-mail and webhook), health (/readyz and `manage.py health`), metrics
(/metrics), lag (dispatch lag of a scheduled poll), operations (the operations view).
"""
