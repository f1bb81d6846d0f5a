"""The API's tests poll real mail first: the fixtures of tests/webhooks/conftest.py."""
from tests.webhooks.conftest import make_mail, polled, receiver  # noqa: F401 (fixtures)
from tests.inbound.conftest import make_credential, make_inbound, tenant  # noqa: F401 (fixtures)
