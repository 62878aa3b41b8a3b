"""Locust: a reconnect storm of token devices (docs/load.md, "Storm"; SPEC §7).

    locust -f scenarios/locust_storm.py --headless -u 10000 -r 400 --processes 4 \\
        --host http://127.0.0.1:18081 --broker mqtt://127.0.0.1:1883 \\
        --authserver http://127.0.0.1:18080

Every device connects; then all lose the broker at once (``--storm-kick-url``, or each
cuts its own connection) and come back with the token they hold.  Figures per round:
seconds until all are back, token traffic, upstream applies.
"""

# Locust first: it monkey-patches the standard library (gevent).
import locust  # (must stay first)

from scenarios.load import plugin  # noqa: F401  (options, runtime, exit status)
from scenarios.load.shapes import StormShape
from scenarios.load.users import DeviceUser

__all__ = ["DeviceUser", "StormShape"]

LOCUST_VERSION = getattr(locust, "__version__", "?")
