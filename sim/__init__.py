"""mqtt-token-sim, in three layers (docs/CONTRACTS.md):

* :mod:`sim.shared`   -- the bottom: wire formats, clocks, runtime helpers;
* :mod:`sim.customer` -- the reference AppServer, the client SDK and the fleet;
* :mod:`sim.harness`  -- the stack, admin client, CLI and pytest plugin.

The provider side lives in ``mock_authserver`` and ``mock_broker`` (beside
:mod:`sim.customer`); :mod:`scenarios` sits on top.
"""
