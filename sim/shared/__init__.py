"""The shared bottom: wire formats, clocks and small runtime helpers.

Imports nothing of ours outside itself; everything else may import it.  The
provider side (``mock_authserver``, ``mock_broker``) and the customer side
(:mod:`sim.customer`) import only this from ``sim``.
"""
