"""Token-aware asyncio MQTT client SDK (SPEC §6).

Pure core (no I/O, no clock, no event loop): :mod:`.policy` (refresh decision, notice
reaction, backoff), :mod:`.events` (counters and events).  Storage: :mod:`.store`
(atomic per-client token files).  Shell: :mod:`.transport` (the MQTT connection, on
gmqtt), :mod:`.appserver_api` (``POST /v1/tokens``), :mod:`.client` (``TokenClient``).
"""
