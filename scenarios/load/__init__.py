"""Load with Locust: users, shapes and the generator's honesty (docs/load.md).

Pure (no gevent, importable anywhere): :mod:`.health` (is the generator the limit?
whose failure is this?), :mod:`.figures` (worker reports, storm rounds).  Under
gevent, after ``import locust`` (the locustfiles ``scenarios/locustfile.py``,
``scenarios/locust_fleet.py``, ``scenarios/locust_storm.py``): :mod:`.mqtt` (one MQTT
session on paho's external-loop API), :mod:`.appserver` (the shared HTTP pool),
:mod:`.monitor`, :mod:`.runtime` (per-process state, messages, exit status),
:mod:`.users`, :mod:`.shapes`, :mod:`.plugin` (options and listeners).

This package must not import gevent-based modules itself: a test process that imports
:mod:`.health` must not be monkey-patched.
"""
