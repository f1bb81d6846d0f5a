"""The hints connections/mail/probe.py adds to a report (no server needed)."""
from __future__ import annotations

import pytest

from connections.mail import MailSettings


@pytest.mark.parametrize("days_left, warned", [(3, True), (13, True), (14, False), (60, False)])
def test_a_certificate_about_to_expire_is_flagged_on_a_passing_tls_step(days_left, warned):
    from connections.mail.probe import ProbeStep, _add_hints

    settings = MailSettings(protocol="imap", host="h")
    tls = ProbeStep("tls", True, 1.0, {"version": "TLSv1.3", "days_left": days_left, "verified": True})
    _add_hints([tls], settings)
    assert tls.ok  # a warning, not a failure
    if warned:
        assert f"expires in {days_left} days" in tls.message and "renew" in tls.hint
    else:
        assert tls.message == "" and tls.hint == ""
