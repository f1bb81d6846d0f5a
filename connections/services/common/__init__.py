"""Small helpers several domains share: how the admin shows a moment (dates), outgoing HTTP held to the targets policy (guarded_http), stored PEM text (pem)."""
