"""How to ask any AppServer for a token: adapters (docs/your-appserver.md).

An adapter is a small TOML file -- method, URL, how the device authenticates, the body's
fields, JMESPath expressions into the answer, the clients that may ask -- or a Python
callable ``module:function`` for what a file cannot say.  The reference AppServer is
the built-in adapter (``load_adapter("builtin")``).

Pure core (no I/O, no clock): :mod:`.model` (what an adapter is), :mod:`.parse` (the file,
its errors with file:line and key), :mod:`.render` (a request for one client; an answer
read back), :mod:`.errors`.  Shell: :mod:`.client` (load a file, ask over aiohttp),
:mod:`.builtin` (account provisioning of the reference AppServer).

Use::

    adapter = load_adapter("adapter.toml")            # or "builtin"
    client = adapter.clients.identity(1)              # [clients] with n = 1
    creds = await ask_token(session, adapter, "http://127.0.0.1:8080", client)
    creds.username, creds.password, creds.expire_ms   # ready for CONNECT
"""

from .client import ask_token, load_adapter, provision_clients
from .errors import (
    AdapterError,
    AdapterFileError,
    AskError,
    BadAnswer,
    Refused,
    Unauthenticated,
    Unavailable,
)
from .model import Adapter, ClientIdentity, ClientTemplates, Credentials
from .parse import builtin_adapter, parse_adapter
from .render import PreparedRequest, prepare_request, read_answer

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterFileError",
    "AskError",
    "BadAnswer",
    "ClientIdentity",
    "ClientTemplates",
    "Credentials",
    "PreparedRequest",
    "Refused",
    "Unauthenticated",
    "Unavailable",
    "ask_token",
    "builtin_adapter",
    "load_adapter",
    "parse_adapter",
    "prepare_request",
    "provision_clients",
    "read_answer",
]
