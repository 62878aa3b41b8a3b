"""Emulator of the provider's token service (SPEC §3)."""
