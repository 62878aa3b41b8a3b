"""mqtt-token-sim: AppServer, client SDK, fleet, stack and CLI."""
