"""Wire formats shared by every party: signing, CONNECT credentials, ``$SYS`` payloads,
topic filters, tokens, and the AuthServer's bootstrap and feed documents for brokers.
Pure: no I/O, no clock.  The provider-side packages (``mock_authserver``,
``mock_broker``) import only this package and :mod:`sim.shared.clock` from ``sim``.
"""

from .credentials import *  # noqa: F403
from .errors import *  # noqa: F403
from .feed import *  # noqa: F403
from .notices import *  # noqa: F403
from .signing import *  # noqa: F403
from .tokens import *  # noqa: F403
from .topics import *  # noqa: F403
