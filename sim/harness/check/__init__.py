"""``mqtt-token-sim check``: the seed's rules as named checks against the user's own
parts (docs/your-appserver.md).  ``check appserver`` drives any AppServer through its
adapter (:mod:`sim.customer.adapter`) and watches what it does at the mock AuthServer
and on the broker.

Pure: :mod:`.model` (outcomes, the report), :mod:`.rules` (the checks and the seed's
words they come from), :mod:`.verdicts` (what observations mean), :mod:`.report`
(table, JSON, HTML, JUnit XML).  Shell: :mod:`.observe` (the AuthServer's admin API, in
one place), :mod:`.timeline` (the AppServer's clock), :mod:`.probe` (MQTT),
:mod:`.appserver` (the checks and the run), :mod:`.cli`.
"""
