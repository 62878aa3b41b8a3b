"""Locust: a fleet of idle token devices held connected (docs/load.md, "Fleet").

    locust -f scenarios/locust_fleet.py --headless -u 20000 -r 400 --processes 4 \\
        --host http://127.0.0.1:18081 --broker mqtt://127.0.0.1:1883

Every device gets its token, waits until all have one, then all connect; the master
reports the stack's memory per connection, then holds the fleet ``--fleet-hold``
seconds (keep-alive, refresh on the expire notice) and stops.
"""

# Locust first: it monkey-patches the standard library (gevent).
import locust  # (must stay first)

from scenarios.load import plugin, users  # noqa: F401  (plugin: options, runtime, exit status)
from scenarios.load.shapes import FleetShape

__all__ = ["FleetDevice", "FleetShape"]


# Locust runs every User class in this module's namespace: only FleetDevice is here.
class FleetDevice(users.DeviceUser):
    """An idle device that connects when the master says so (memory per connection)."""

    gated = True


LOCUST_VERSION = getattr(locust, "__version__", "?")
