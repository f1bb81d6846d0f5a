"""The operations view is reachable from the admin index (its own card) and from the dashboard,
with the alerts firing in the user's tenants."""
from __future__ import annotations

import re

import pytest
from django.utils import timezone

from connections.models import InboundConnection, Tenant
from connections.services.monitoring import watchdog

from .test_endpoints import _staff

pytestmark = [pytest.mark.django_db]


@pytest.mark.smoke
def test_index_card_and_dashboard_link_lead_to_the_operations_view(tenant):
    other = Tenant.objects.create(slug="other-ops", name="Other")
    InboundConnection.objects.create(tenant=tenant, name="broken", host="imap.example", last_poll_at=timezone.now(),
                                     last_poll_ok=False, consecutive_failures=4, last_error="refused")
    InboundConnection.objects.create(tenant=other, name="theirs", host="imap.other.example",
                                     last_poll_at=timezone.now(), last_poll_ok=False, consecutive_failures=4)
    watchdog.run_pass()  # their failing alerts, and system alerts (no beat, no worker)

    viewer = _staff("viewer", tenant, role="viewer")
    html = viewer.get("/admin/").content.decode()
    card = html[html.index('id="tm-operations-card"'):]
    url = re.search(r'href="([^"]+)"', card).group(1)
    assert url == "/admin/connections/alert/operations/"
    assert "1 alert firing (1 critical)" in card  # their tenant's only: not the other's, no system alerts
    assert 'id="tm-dashboard-operations"' in html  # the dashboard's own link
    page = viewer.get(url)
    assert page.status_code == 200 and "broken" in page.content.decode()

    root = _staff("root", None, superuser=True)
    root_card = root.get("/admin/").content.decode()
    assert "alerts firing" in root_card and "1 alert firing" not in root_card  # every tenant + system

    nobody = _staff("nobody", None)  # staff without a tenant: may not view alerts
    html = nobody.get("/admin/").content.decode()
    assert "tm-operations-card" not in html and "tm-dashboard-operations" not in html
