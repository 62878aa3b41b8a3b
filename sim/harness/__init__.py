"""The harness: composes the provider side and the customer side.

The one stack (:mod:`.stack`), the admin client, the CLI ``mqtt-token-sim``
(:mod:`.cli`) and the pytest plugin.  Only :mod:`scenarios` sits above it.
"""
