"""The Django admin, one module per concept; each only calls services."""
from . import tenancy  # noqa: F401
from . import credentials  # noqa: F401
from . import outbound  # noqa: F401
from . import inbound  # noqa: F401
from . import proxies  # noqa: F401
