"""The token-enforcing MQTT broker: an amqtt 0.12.1 plugin plus fixes (SPEC §4).

Core (pure, no amqtt/sockets/wall clock): :mod:`~mock_broker.decision`,
:mod:`~mock_broker.authority`, :mod:`~mock_broker.config`.
Shell: :mod:`~mock_broker.plugin` (amqtt adapter), :mod:`~mock_broker.hardening`
(amqtt's flaws fixed), :mod:`~mock_broker.broker` (build and run),
:mod:`~mock_broker.follower` (AuthServer feed), :mod:`~mock_broker.metrics`,
:mod:`~mock_broker.cli`.
"""
