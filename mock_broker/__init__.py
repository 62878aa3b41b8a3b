"""The token-enforcing MQTT broker: an amqtt 0.12.1 plugin plus fixes (SPEC §4)."""
