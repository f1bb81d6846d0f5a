"""The Django admin, one module per concept; each only calls services."""
from . import tenancy  # noqa: F401
from . import credentials  # noqa: F401
from . import outbound  # noqa: F401
from . import outbox  # noqa: F401
from . import inbound  # noqa: F401
from . import monitoring  # noqa: F401
from . import oauth2  # noqa: F401
from . import outbox_templates  # noqa: F401
from . import webhooks  # noqa: F401
from . import proxies  # noqa: F401
