"""Locust load for mqtt-token-sim: busy MQTT-with-token devices and AppServer users.

    locust -f scenarios/locustfile.py MqttTokenUser --headless -u 2000 -r 100 -t 60s \\
        --host http://127.0.0.1:18081 --broker mqtt://127.0.0.1:1883

``--host`` is the AppServer, ``--broker`` the token broker (docs/load.md).  Users:
:class:`~scenarios.load.users.MqttTokenUser` (token, one MQTT socket, QoS 1
publishes, reconnects with the token it holds, in-session refresh) and
:class:`~scenarios.load.users.AppServerUser` (token requests only).  The idle fleet
and the reconnect storm have their own locustfiles (``locust_fleet.py``,
``locust_storm.py``): a locustfile with a load shape always runs that shape.
"""

# Locust first: it monkey-patches the standard library (gevent) before anything else
# imports socket or ssl.
import locust  # (must stay first)

from scenarios.load import plugin  # noqa: F401  (options, runtime, exit status)
from scenarios.load.users import AppServerUser, MqttTokenUser

__all__ = ["AppServerUser", "MqttTokenUser"]

LOCUST_VERSION = getattr(locust, "__version__", "?")
