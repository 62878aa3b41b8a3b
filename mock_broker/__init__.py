"""The token-enforcing MQTT broker: amqtt 0.12.1's listeners and codecs, our hardened
connection path, and SPEC §4's token rules passed in as a policy (docs/broker.md).

Core (pure, no amqtt/sockets/wall clock): :mod:`~mock_broker.decision`,
:mod:`~mock_broker.authority`, :mod:`~mock_broker.connect`, :mod:`~mock_broker.config`.
Shell: :mod:`~mock_broker.hardened` (the broker, amqtt's flaws fixed),
:mod:`~mock_broker.token_policy` (the token rules as its policy),
:mod:`~mock_broker.plugin` (the same rules for a stock amqtt), :mod:`~mock_broker.broker`
(build and run), :mod:`~mock_broker.follower` (AuthServer feed),
:mod:`~mock_broker.metrics`, :mod:`~mock_broker.cli`.
"""
