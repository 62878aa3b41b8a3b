"""Scenarios with figures: storm, cache reuse, outage, expiry/refresh, revocation (SPEC §7)."""
