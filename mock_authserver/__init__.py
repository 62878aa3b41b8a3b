"""Emulator of the provider's token service (SPEC §3; docs/authserver.md).

Pure core (no aiohttp, no sockets, no wall clock; mypy strict): ``tokens`` (codec),
``errors`` (the one error tree), ``config``, ``validation`` (parameter rules), ``auth``
(signature, timestamp and nonce checks), ``ttl`` (the TTL engine), ``faults``
(``FaultSet``).  Storage: ``store`` (SQLite).  Shell:
``app``, ``render``, ``gate``, ``legacy_api``, ``openapi``, ``admin``, ``runner``, ``cli``.

This package stays import-light on purpose: the broker imports ``tokens`` and ``errors``
without pulling in the aiohttp app.  Entry points: ``mock_authserver.runner.run_authserver``
and ``mqtt-token-sim authserver``.
"""
