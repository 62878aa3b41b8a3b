"""The customer side: what the provider's users build (SPEC §5, §6).

The reference AppServer (:mod:`.appserver`), the token-aware client SDK
(:mod:`.client`) and the fleet of such clients (:mod:`.fleet`).  Imports only
:mod:`sim.shared`: it talks to the provider's parts over their public wire, as a
customer's code does against the real service.
"""
