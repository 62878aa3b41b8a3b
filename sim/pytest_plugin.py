"""pytest plugin of mqtt-token-sim (entry point ``pytest11``).

Fixtures arrive with the stack (issue: SDK, fleet, stack and pytest plugin).
"""
